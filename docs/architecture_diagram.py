"""Draws docs/images/architecture.png from the code itself: the parts of mnistlab, their imports, one run.

    python docs/architecture_diagram.py            # writes docs/images/architecture.png
    python docs/architecture_diagram.py OUT.png    # elsewhere

The parts are read from the tree with ``ast``: every subpackage of ``src/mnistlab`` and every module at its
top level is a part; ``scripts/*.py`` together are the entry scripts and each package under
``src/hydra_plugins`` is one part more. An arrow A -> B says that some module of A imports from B. Parts
stand in rows by how deep their imports go: a part that imports no other part is in the bottom row, and a
part sits one row above the deepest part it imports (parts that import each other share a row, and their
arrows are drawn in red). Nothing here names a module of the package, so the picture follows renames; the
only names written in are the captions of well-known parts (``CAPTIONS``, used where such a part exists).

The strip at the bottom is one run's data flow. Its steps are concepts (compose, fit, test, report), and
the module shown under each is the one that defines it, found in the tree: the function ``compose``, the
subclasses of ``LightningDataModule`` and ``LightningModule``, and the module that names ``metrics.json``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mnistlab"
SCRIPTS = "entry scripts"
CAPTIONS = {  # a part's name -> what a reader should call it, where the part exists
    SCRIPTS: "compose a config, call one function",
    "composition": "config -> trainer, system, data module",
    "engine": "how a training step runs",
    "systems": "the LightningModule: loss, metrics, optimizer",
    "data": "IDX files, the LightningDataModule",
    "models": "plain nn.Modules: x -> logits",
    "evaluation": "evaluate, predict, export, reports",
    "serving": "HTTP API and page",
    "sweeps": "sweep summary, pruning",
    "callbacks": "Lightning callbacks",
    "mnistlab_sweeps": "Hydra sweeper and launcher plugins",
}
WIDTH, MARGIN, GAP = 2000, 40, 26
FILL = {"scripts": "#fde2c8", "package": "#d8e8f8", "module": "#eef2f6", "plugin": "#e4f2dc"}


@dataclass
class Part:
    """A subpackage, a top-level module, the entry scripts or a Hydra plugin package."""

    name: str
    kind: str  # scripts, package, module or plugin
    files: list[Path] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, src: Path) -> set[str]:
    """The absolute names of every module ``path`` imports from (relative imports resolved)."""
    here = module_name(path, src).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, node.module] if node.module else base)
            found.add(stem)
            found |= {f"{stem}.{alias.name}" for alias in node.names}  # ``from pkg import module``
    return found


def parts_of(root: Path = ROOT) -> dict[str, Part]:
    """Every part of the tree under ``root`` and the parts it imports from."""
    src, parts = root / "src", {}
    package = src / PACKAGE
    for path in sorted(package.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            parts[path.name] = Part(path.name, "package", sorted(path.rglob("*.py")))
        elif path.suffix == ".py" and path.name != "__init__.py":
            parts[path.stem] = Part(path.stem, "module", [path])
    for path in sorted((src / "hydra_plugins").glob("*/__init__.py")):
        parts[path.parent.name] = Part(path.parent.name, "plugin", sorted(path.parent.rglob("*.py")))
    parts[SCRIPTS] = Part(SCRIPTS, "scripts", sorted((root / "scripts").glob("*.py")))
    for part in parts.values():
        for path in part.files:
            base = root / "scripts" if part.kind == "scripts" else src
            for name in imported_modules(path, base):
                pieces = name.split(".")
                # The part is the name after the package's: mnistlab.data.files -> data.
                if pieces[0] in (PACKAGE, "hydra_plugins") and pieces[1:2] and pieces[1] in parts.keys() - {part.name}:
                    part.imports.add(pieces[1])
    return parts


def rows_of(parts: dict[str, Part]) -> list[list[str]]:
    """Parts by row, the entry scripts' row first: a part sits one row above the deepest part it imports."""
    reach = {name: set() for name in parts}  # what each part reaches through imports
    for name in parts:
        todo = list(parts[name].imports)
        while todo:
            other = todo.pop()
            if other not in reach[name]:
                reach[name].add(other)
                todo += parts[other].imports
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 0  # a cycle ends here; its members share a row below
            below = [o for o in parts[name].imports if name not in reach[o]]  # not in a cycle with it
            same = [o for o in parts[name].imports if name in reach[o]]
            level[name] = max([depth(o) + 1 for o in below] + [0])
            for other in same:
                level[name] = max(level[name], depth(other))
        return level[name]

    for name in parts:
        depth(name)
    top = max(level.values())
    rows: list[list[str]] = [[] for _ in range(top + 1)]
    for name in sorted(parts):
        rows[top - level[name]].append(name)
    rows = [row for row in rows if row]
    for _ in range(4):  # order each row by where the parts it imports stand (fewer crossings)
        place = {n: i / max(len(r), 1) for r in rows for i, n in enumerate(r)}
        for row in rows[:-1]:
            row.sort(key=lambda n: sum(place[o] for o in parts[n].imports) / max(len(parts[n].imports), 1))
    return rows


def defined_in(parts: dict[str, Part], test) -> str:
    """The ``part/file`` of the first file holding a node for which ``test(node)`` holds, else ``?``."""
    for part in parts.values():
        for path in part.files:
            if any(test(node) for node in ast.walk(ast.parse(path.read_text()))):
                folder = "scripts" if part.kind == "scripts" else path.parent.name
                return f"{folder}/{path.name}"
    return "?"


def subclasses(base: str):
    def test(node: ast.AST) -> bool:
        return isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] == base for b in node.bases)

    return test


def test_hook(node: ast.AST) -> bool:
    """A callback class with a hook at the end of testing (the test report)."""
    if not subclasses("Callback")(node):
        return False
    methods = {m.name for m in node.body if isinstance(m, ast.FunctionDef)}
    return bool(methods & {"on_test_end", "on_test_epoch_end"})


def data_flow(parts: dict[str, Part]) -> list[tuple[str, str]]:
    """One training run, step by step: (what happens, the files that hold it, separated by ``; ``)."""
    compose = defined_in(parts, lambda n: isinstance(n, ast.FunctionDef) and n.name == "compose")
    data = defined_in(parts, subclasses("LightningDataModule"))
    system = defined_in(parts, subclasses("LightningModule"))
    fit = defined_in(parts, lambda n: isinstance(n, ast.Attribute) and n.attr == "fit" and "trainer" in ast.unparse(n))
    return [
        ("scripts/train.py", "Hydra composes conf/train.yaml"),
        ("compose(cfg)", f"{compose}; -> trainer, system, data module"),
        ("Trainer.fit, then .test", f"{fit}; data: {data}; system: {system}"),
        ("the test report", f"{defined_in(parts, test_hook)}; confusion matrix, per class"),
        ("the run folder", "metrics.json, checkpoints; TensorBoard events"),
    ]


def summary(part: Part) -> str:
    """The first sentence of the part's docstring (its package's ``__init__``, or the module's)."""
    main = next((p for p in part.files if p.name == "__init__.py"), part.files[0] if part.kind == "module" else None)
    text = ast.get_docstring(ast.parse(main.read_text())) if main else None
    return (text or "").split("\n\n")[0].replace("\n", " ").replace("``", "").split(". ")[0].rstrip(".")


def wrap(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def arrow(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], colour: str) -> None:
    draw.line([start, end], fill=colour, width=2)
    (x0, y0), (x1, y1) = start, end
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    back_x, back_y = x1 - 12 * ux, y1 - 12 * uy  # the arrowhead: 12 px long, 10 px wide
    draw.polygon([(x1, y1), (back_x + 5 * uy, back_y - 5 * ux), (back_x - 5 * uy, back_y + 5 * ux)], fill=colour)


def draw(parts: dict[str, Part], out: Path) -> None:
    """Lays the parts out in rows, draws the import arrows and the data-flow strip, writes ``out``."""
    title, head, body = font(30), font(19), font(14)
    rows = rows_of(parts)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    lines: dict[str, list[str]] = {}
    y = 110
    row_gap = 120
    for row in rows:
        width = min((WIDTH - 2 * MARGIN - GAP * (len(row) - 1)) / len(row), 600)
        left = (WIDTH - len(row) * width - GAP * (len(row) - 1)) / 2  # a short row stands in the middle
        for name in row:
            part = parts[name]
            files = [p.stem if part.kind != "scripts" else p.name for p in part.files if p.name != "__init__.py"]
            words = CAPTIONS.get(name) or summary(part)
            lines[name] = wrap(words, body, width - 16)[:3] + (wrap(", ".join(files), body, width - 16)
                                                                if part.kind != "module" else [])  # fmt: skip
        height = max(40 + 20 * len(lines[n]) for n in row)
        for i, name in enumerate(row):
            x = left + i * (width + GAP)
            boxes[name] = (x, y, x + width, y + height)
        y += height + row_gap
    strip_top = y
    image = Image.new("RGB", (WIDTH, int(strip_top + 260)), "white")
    pen = ImageDraw.Draw(image)
    pen.text((MARGIN, 24), "mnistlab: its parts and their imports (read from the code)", fill="black", font=title)
    pen.text((MARGIN, 66), "A -> B: a module of A imports from B. Red: parts that import each other.",
             fill="#555555", font=body)  # fmt: skip
    order = {n: r for r, row in enumerate(rows) for n in row}
    middle = {n: (b[0] + b[2]) / 2 for n, b in boxes.items()}
    edges = [(n, o) for n, part in parts.items() for o in part.imports]
    # Each arrow leaves and enters at its own point along the box's edge, ordered by where its other end is.
    out_ports, in_ports = {}, {}
    for name in parts:
        leaving = sorted((e for e in edges if e[0] == name), key=lambda e: middle[e[1]])
        entering = sorted((e for e in edges if e[1] == name), key=lambda e: middle[e[0]])
        x0, _, x1, _ = boxes[name]
        for ports, group in ((out_ports, leaving), (in_ports, entering)):
            for k, edge in enumerate(group):
                ports[edge] = x0 + 12 + (x1 - x0 - 24) * (k + 1) / (len(group) + 1)
    for edge in edges:
        (_, _, _, y1), (_, oy0, _, oy1) = boxes[edge[0]], boxes[edge[1]]
        if order[edge[1]] > order[edge[0]]:
            arrow(pen, (out_ports[edge], y1), (in_ports[edge], oy0), "#8a9bb0")
        else:  # parts that import each other, in one row
            arrow(pen, (out_ports[edge], y1), (in_ports[edge], oy1), "#c0392b")
    for name, part in parts.items():
        x0, y0, x1, y1 = boxes[name]
        pen.rounded_rectangle((x0, y0, x1, y1), radius=8, fill=FILL[part.kind], outline="#34495e", width=2)
        label = f"{name}/" if part.kind in ("package", "plugin") else name
        pen.text(((x0 + x1) / 2, y0 + 8), label, fill="black", font=head, anchor="mt")
        for k, text in enumerate(lines[name]):
            pen.text(((x0 + x1) / 2, y0 + 34 + 20 * k), text, fill="#333333", font=body, anchor="mt")
    pen.text((MARGIN, strip_top), "One training run", fill="black", font=head)
    steps = data_flow(parts)
    width = (WIDTH - 2 * MARGIN - 60 * (len(steps) - 1)) / len(steps)
    for i, (what, where) in enumerate(steps):
        x = MARGIN + i * (width + 60)
        pen.rounded_rectangle((x, strip_top + 40, x + width, strip_top + 170), radius=8, fill="#fff6d5",
                              outline="#7f6a00", width=2)  # fmt: skip
        pen.text((x + width / 2, strip_top + 58), what, fill="black", font=head, anchor="mt")
        for k, text in enumerate(where.split("; ")):
            pen.text((x + width / 2, strip_top + 92 + 22 * k), text, fill="#555555", font=body, anchor="mt")
        if i:
            arrow(pen, (x - 52, strip_top + 95), (x - 6, strip_top + 95), "#7f6a00")
    pen.text((MARGIN, strip_top + 200), "Made by docs/architecture_diagram.py from src/ and scripts/; rerun it after a "
             "change of structure.", fill="#777777", font=body)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else ROOT / "docs" / "images" / "architecture.png"
    draw(parts_of(ROOT), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
