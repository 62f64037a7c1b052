"""Every command of the README and docs/ runs as shown, and every output they show is what it prints.

Conventions of the pages (the README states them in short, under "Set up on a fresh machine"):

- ```` ```bash ````: each ``python scripts/...`` or ``python benchmarks/...`` line is run; no output is shown.
- A transcript is a block whose first line starts with ``$ `` (tag it ```` ```console ````): commands, each
  followed by what it prints. The command is run and every line shown under it must be a whole line of its
  output (stdout and stderr together), in the order shown, other lines in between allowed. Runs of spaces
  count as one; ``…`` in a shown line stands for any text (a log timestamp, a path, a checksum); a line
  that is only ``...`` marks lines left out. Under ```` ```console numbers-vary ```` every number stands for
  any number and the bars drawn with ``█`` are ignored: for outputs of training, whose figures depend on
  the run's length and the torch release (no test may depend on the release of the day).
- ```` ```sh ```` (installs, TensorBoard, clusters, a server) is shown, not run. ```` ```text unchecked:
  REASON ```` shows an output that no command here prints and says why in its tag; ```` ```python ```` and
  ```` ```yaml ```` are code. A fence without a tag is refused, so no output block goes unnoticed.

Short runs: a ``train.py`` command gets ``trainer.max_epochs=1`` (2 when it continues a checkpoint), no
progress bar and a run or sweep folder of its own. Bash lines also get ``trainer.limit_train_batches=2``
(Optuna: 2 trials); transcripts do not, because that setting changes the engine the log line names, so
the training a transcript shows is a small run (a tiny setting is written into its command).
``benchmarks/speedrun.py`` runs one seed of 3 optimizer steps per pipeline.
A line whose comment says ``on a GPU`` or ``N GPUs`` runs only where there are that many GPUs.
Each distinct command runs once, whichever pages show it. The example run folder
``outputs/2026-11-25/12-12-40`` is made first (1 epoch of ``experiment=notebook_hidden``, whose sigmoid head
the predict outputs show); ``...`` stands for it and ``/elsewhere/mnist`` for the real data folder.

What is shown but not compared here (each such block is tagged ``text unchecked: REASON``): the folder
listing of a run; the server's JSON answer (it needs a running server; ``tests/test_serve.py`` checks it);
results of long runs (``experiment=best_hidden``: 20 epochs); own-network.md's walk-through, a minute of
training a network from the user's own module (``tests/test_own_network.py`` runs those steps). The tables
of docs/errors.md are compared row by row by ``tests/test_errors.py`` and ``tests/test_mistakes.py``;
Markdown tables of measured results (docs/results.md, docs/performance.md) are reports, not outputs.
The network-record errors of own-network.md are compared on checkpoints that ``prepare`` edits.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, ROOT
from launcher import run_python
from PIL import Image

from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_RUN = "outputs/2026-11-25/12-12-40"
NO_BAR = "callbacks.progress_bar.refresh_rate=0"
# The order commands run in: a model exists before it is exported, exported before it is predicted with.
PHASES = {"train.py": 0, "export.py": 0, "evaluate.py": 1, "predict.py": 1, "benchmark.py": 1, "speedrun.py": 1}
TAGS = {"bash", "sh", "console", "text", "python", "yaml"}
FENCE = re.compile(r"^([ \t]*)```([^`\n]*)\n(.*?)^\1```[ \t]*$", re.S | re.M)  # also indented, in a list
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
GAPS = {"...", "…"}
HOSTILE = {  # network records that a checkpoint must never be allowed to call
    "os_system.ckpt": {"_target_": "os.system", "command": "touch marker"},
    "hub_load.ckpt": {"_target_": "torch.hub.load", "repo_or_dir": "someone/payload", "model": "run"},
    "nested.ckpt": {"_target_": "torch.nn.Linear", "in_features": {"_target_": "os.system", "command": "x"}},
    "mynets.ckpt": {"_target_": "mynets.TinyCNN", "width": 8, "num_classes": 10},
}


@dataclass
class Block:
    """One fenced block: the page it is on, its tag, the rest of its info string, its text."""

    doc: str
    tag: str
    info: str
    text: str

    @property
    def is_transcript(self) -> bool:
        return self.text.lstrip().startswith("$ ") and self.tag != "text"  # whatever else its tag says


@dataclass
class Shown:
    """One command of a transcript and the lines the page shows under it."""

    where: str
    command: str
    lines: list[str] = field(default_factory=list)
    numbers_vary: bool = False


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        for indent, info, text in FENCE.findall(doc.read_text()):
            tag, _, rest = info.strip().partition(" ")
            text = "".join(line.removeprefix(indent) for line in text.splitlines(keepends=True))
            found.append(Block(doc.name, tag, rest.strip(), text))
    return found


def transcripts() -> list[Shown]:
    """Every ``$ command`` of every transcript, with the output lines shown under it."""
    shown: list[Shown] = []
    for block in blocks():
        if not block.is_transcript:
            continue
        current = None
        for line in block.text.replace("\\\n", " ").splitlines():
            if line.startswith("$ "):
                command = line[2:].strip()
                current = Shown(f"{block.doc}: $ {command}", command, numbers_vary="numbers-vary" in block.info)
                shown.append(current)
            elif current is not None:
                current.lines.append(line)
    return shown


def parse(command: str) -> tuple[list[str], int] | None:
    """(argv after ``python``, GPUs needed) of a ``python scripts|benchmarks/...`` line, else None."""
    if not command.startswith(("python scripts/", "python benchmarks/")):
        return None
    comment = command.split("#", 1)[1] if "  #" in command else ""
    gpus = re.search(r"\bon a GPU\b|\b(\d+) GPUs\b", comment)
    return shlex.split(command, comments=True)[1:], 0 if gpus is None else int(gpus.group(1) or 1)


def documented_commands() -> list[tuple[str, list[str], int, bool]]:
    """(where, argv after ``python``, GPUs needed, shown in a transcript) of every command the pages run."""
    found = []
    for block in blocks():
        if block.tag == "bash" and not block.is_transcript:
            for line in block.text.replace("\\\n", " ").splitlines():
                if (parsed := parse(line)) is not None:
                    found.append((f"{block.doc}: {line.split('  #')[0].strip()}", *parsed, False))
    for shown in transcripts():
        if (parsed := parse(shown.command)) is not None:
            found.append((shown.where, *parsed, True))
    return found


def short_run(args: list[str], index: int, transcript: bool) -> list[str]:
    """The command's own arguments with placeholders filled, then settings that make it short."""
    filled = []
    for arg in args:
        arg = arg.replace(".../", f"{EXAMPLE_RUN}/checkpoints/").replace("/elsewhere/mnist", str(DATA_DIR / "mnist"))
        filled.append(f"{arg.split('=')[0]}={EXAMPLE_RUN}" if arg.endswith("=...") else arg)
    script = Path(filled[0]).name
    if script == "benchmark.py":
        extra = ["epochs=1", "warmup=0", "data.batch_size=5500"]  # 10 optimizer steps per epoch
        return filled + extra + (["startup_runs=1"] if any(a.startswith("startup_runs=") for a in filled) else [])
    if script == "speedrun.py":  # one seed of 3 optimizer steps per pipeline
        return [*(a for a in filled if not a.startswith("seeds=")), "seeds=1", "steps=3", "warmup_steps=1", NO_BAR]
    if script != "train.py":
        return filled
    epochs = 2 if any(a.startswith("ckpt_path=") for a in filled) else 1  # continuing: one epoch more
    extra = [f"trainer.max_epochs={epochs}", NO_BAR] + ([] if transcript else ["trainer.limit_train_batches=2"])
    if "-m" not in filled:  # two runs started in the same second would share Hydra's default run folder
        extra.append(f"hydra.run.dir=outputs/docs-{index}")
    if "-m" in filled:
        extra.append(f"hydra.sweep.dir=multirun/docs-{index}")
        if "hparams_search=optuna" in filled and not transcript:
            extra.append("hydra.sweeper.n_trials=2")
    if transcript:  # the output shows the command's own settings (in job names, say): they stay as shown
        extra = [e for e in extra if e.split("=")[0] not in {a.split("=")[0] for a in filled}]
    return filled + extra


def normal(line: str, numbers_vary: bool) -> str:
    """The line with runs of spaces as one space (and, where numbers vary, without the bars of █)."""
    return " ".join((line.replace("█", " ") if numbers_vary else line).split())


def pattern(line: str, numbers_vary: bool) -> re.Pattern:
    """What a printed line must match (whole) to be the shown ``line``."""
    parts = []
    for piece in re.split("(…)", normal(line, numbers_vary)):
        if piece == "…":
            parts.append(".*")
        elif numbers_vary:
            parts += [NUMBER if i % 2 else re.escape(p) for i, p in enumerate(re.split(f"({NUMBER})", piece))]
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def missing_lines(shown: list[str], printed: str, numbers_vary: bool) -> list[str]:
    """The shown lines that the printed output lacks, in the order shown."""
    real = [normal(line, numbers_vary) for line in printed.splitlines()]
    position, missing = 0, []
    for line in shown:
        if not line.strip() or line.strip() in GAPS:
            continue
        wanted = pattern(line, numbers_vary)
        hit = next((i for i in range(position, len(real)) if wanted.fullmatch(real[i])), None)
        if hit is None:
            missing.append(line)
        else:
            position = hit + 1
    return missing


def run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = run_python(args, cwd=cwd, env=env, timeout=900, merge_stderr=True)
    return done, time.perf_counter() - start


def prepare(cwd: Path) -> None:
    """The example run folder, and the files the Predict sections name."""
    result, _ = run(
        [str(ROOT / "scripts" / "train.py"), "experiment=notebook_hidden", "trainer.max_epochs=1", NO_BAR,
         f"hydra.run.dir={EXAMPLE_RUN}"], cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    images, _ = load_split(DATA_DIR / "mnist", MNIST, train=False)
    (cwd / "digits").mkdir()
    (cwd / "empty").mkdir()
    Image.fromarray(images[998].numpy()).save(cwd / "digits" / "eight.png")
    Image.fromarray(255 - images[998].numpy()).save(cwd / "digits" / "eight_on_paper.png")
    seven = np.kron(255 - images[0].numpy(), np.ones((5, 5), np.uint8))  # dark on a light page, enlarged
    seven = np.pad(seven // 2 + 100, ((10, 60), (60, 10)), constant_values=228)  # dark grey, off-centre
    Image.fromarray(seven).convert("RGB").save(cwd / "my_digit.jpg", quality=80)
    Image.fromarray(seven).convert("RGB").save(cwd / "digits" / "seven_photo.jpg", quality=80)
    (cwd / "notes.png").write_text("a shopping list, not a picture")
    # Checkpoints whose network record was edited (own-network.md): plain values only, so no mnistlab names.
    ckpt = torch.load(cwd / EXAMPLE_RUN / "checkpoints" / "last.ckpt", weights_only=True)
    (cwd / "hostile").mkdir()
    for name, record in HOSTILE.items():
        torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "net": record}}, cwd / "hostile" / name)


def test_every_fence_is_tagged_and_every_unchecked_output_says_why() -> None:
    wrong = [
        f"{b.doc}: ```{b.tag} {b.info}  {b.text.splitlines()[0] if b.text else ''}"
        for b in blocks()
        if b.tag not in TAGS or (b.tag == "text" and not b.info.startswith("unchecked: "))
    ]
    assert not wrong, "tag each fence (bash, sh, console, text unchecked: REASON, python, yaml):\n" + "\n".join(wrong)


def test_every_transcript_command_is_run() -> None:
    unrunnable = [s.where for s in transcripts() if parse(s.command) is None]
    assert not unrunnable, "show these as ```text unchecked: REASON, or make them runnable:\n" + "\n".join(unrunnable)


def test_every_error_line_in_the_prose_is_compared() -> None:
    """An ``error: ...`` quoted in running text is a line of a transcript (or of errors.md's tested tables)."""
    shown = {" ".join(line.split()) for s in transcripts() for line in s.lines}
    loose = []
    for doc in DOCS:
        prose = FENCE.sub("", doc.read_text())
        for line in prose.splitlines():
            tested_table = doc.name == "errors.md" and line.startswith("| ")  # tests/test_errors.py, test_mistakes.py
            for quoted in re.findall(r"`(error: [^`]*)`", line):
                if not tested_table and quoted != "error: ..." and " ".join(quoted.split()) not in shown:
                    loose.append(f"{doc.name}: {quoted}")
    assert not loose, "show these in a ```console transcript, which is run and compared:\n" + "\n".join(loose)


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` (``mnistlab.x.y``) names an importable module or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_every_module_and_file_the_docs_name_exists() -> None:
    """``mnistlab.x.y`` names and repository paths in the pages point at code that is there (renames show here).

    ``mynets.py`` is the user's own module of own-network.md, not the repository's.
    """
    sources = [
        str(p.relative_to(ROOT))
        for d in ("src", "scripts", "tests", "benchmarks", "docs")
        for p in (ROOT / d).rglob("*.py")
    ]
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        for dotted in sorted(set(re.findall(r"\bmnistlab(?:\.[A-Za-z_]\w*)+", text))):
            if not resolves(dotted):
                stale.append(f"{doc.name}: {dotted}")
        for path in sorted(set(re.findall(r"\b(?:src|scripts|tests|conf|benchmarks|docs)/[\w/.-]*\w", text))):
            if "*" not in path and not (ROOT / path).exists():
                stale.append(f"{doc.name}: {path}")
        for path in sorted(set(re.findall(r"[\w/]+\.py\b", text))):  # also short forms: systems/graphed.py
            if Path(path).name != "mynets.py" and not any(f == path or f.endswith(f"/{path}") for f in sources):
                stale.append(f"{doc.name}: {path}")
    assert not stale, "the pages name code that is not there:\n" + "\n".join(stale)


def test_table_of_commands_covers_every_script() -> None:
    scripts = {Path(args[0]).name for _, args, _, _ in documented_commands()}
    assert {"train.py", "evaluate.py", "predict.py", "export.py", "benchmark.py"} <= scripts


def test_a_shown_line_matches_only_what_it_says() -> None:
    printed = "[2026-12-03 15:10:39,017][x][INFO] - engine: chunked\ntest/acc 0.9527  test/loss 0.1636  (/tmp/run)"
    assert not missing_lines(["[…][x][INFO] - engine: chunked", "...", "test/acc …"], printed, False)
    assert missing_lines(["test/acc 0.9767  test/loss 0.0764  (…)"], printed, False)
    assert not missing_lines(["test/acc 0.9767  test/loss 0.0764  (…)"], printed, True)
    assert missing_lines(["test/loss 0.1  (…)", "engine: chunked"], printed, True)  # order, and whole lines
    bars = "  8  0.9974  ████████████████████  <- prediction\n  9  0.0016"
    assert not missing_lines(["  8  0.9933  ███████  <- prediction", "  9  0.0044"], bars, True)


@pytest.mark.slow
def test_every_documented_command_runs_and_prints_what_the_docs_show(tmp_path: Path) -> None:
    # The scripts are run by path from the repository, in a working directory of their own.
    prepare(tmp_path)
    gpus = torch.cuda.device_count()
    planned: dict[str, tuple[str, list[str], bool]] = {}  # a command shown twice, on any page, runs once
    for where, args, need, transcript in documented_commands():
        if need <= gpus:
            key = shlex.join(args)
            first = planned.get(key, (where, args, False))
            planned[key] = (first[0], args, first[2] or transcript)
    runnable = {
        key: (where, short_run([str(ROOT / a) if a.startswith(("scripts/", "benchmarks/")) else a for a in args],
                               index, transcript))
        for index, (key, (where, args, transcript)) in enumerate(planned.items())
    }  # fmt: skip
    refused = {  # a transcript that shows an error line shows a command that must fail
        shlex.join(parse(s.command)[0]) for s in transcripts() if any(x.startswith("error: ") for x in s.lines)
    }
    failures, timings, printed = [], [], {}
    for phase in sorted(set(PHASES.values())):
        batch = [(key, w, a) for key, (w, a) in runnable.items() if PHASES[Path(a[0]).name] == phase]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for (key, where, args), (result, seconds) in zip(
                batch, pool.map(lambda c: run(c[2], tmp_path), batch), strict=True
            ):
                timings.append(f"{seconds:6.1f} s  {where}")
                printed[key] = result.stdout
                if (result.returncode != 0) != (key in refused) or "Traceback" in result.stdout:
                    failures.append(f"{where}\n  ran: {shlex.join(args)}\n{result.stdout[-1500:]}")
    print("\n".join(timings))
    for shown in transcripts():
        args = parse(shown.command)
        key = shlex.join(args[0]) if args else None
        if key not in printed:
            continue
        missing = missing_lines(shown.lines, printed[key], shown.numbers_vary)
        if missing:
            failures.append(
                f"{shown.where}\n  the page shows lines it does not print:\n"
                + "\n".join(f"    {line}" for line in missing)
                + f"\n  it printed (last 2,000 characters):\n{printed[key][-2000:]}"
            )
    assert not failures, "\n\n".join(failures)
    assert not (tmp_path / "marker").exists()  # no edited checkpoint ran its os.system
