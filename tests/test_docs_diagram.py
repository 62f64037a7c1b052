"""docs/architecture_diagram.py: the architecture picture is drawn from the tree as it is now."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from PIL import Image

SCRIPT = ROOT / "docs" / "architecture_diagram.py"


def load_script():
    spec = importlib.util.spec_from_file_location("architecture_diagram", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_diagram_is_drawn(tmp_path: Path) -> None:
    out = tmp_path / "architecture.png"
    done = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(out) as image:
        assert image.format == "PNG" and min(image.size) > 500
        assert len(image.convert("L").getcolors(2**16)) > 10  # drawn, not blank


def test_every_subpackage_and_module_is_a_part_with_its_imports() -> None:
    diagram = load_script()
    parts = diagram.parts_of(ROOT)
    package = ROOT / "src" / "mnistlab"
    subpackages = {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert subpackages and subpackages | modules <= set(parts)
    assert {"entry scripts"} <= set(parts) and parts["entry scripts"].imports  # the scripts import the package
    rows = diagram.rows_of(parts)
    assert sorted(n for row in rows for n in row) == sorted(parts)  # each part drawn once
    assert "entry scripts" in rows[0]  # nothing imports the scripts (nor the Hydra plugins, which Hydra finds)
    flow = dict(diagram.data_flow(parts))
    assert "?" not in " ".join(flow.values()), flow  # every step of a run was found in the tree


def test_relative_and_absolute_imports_are_resolved(tmp_path: Path) -> None:
    diagram = load_script()
    src = tmp_path / "src"
    (src / "mnistlab" / "alpha").mkdir(parents=True)
    (src / "mnistlab" / "beta").mkdir()
    (src / "mnistlab" / "__init__.py").write_text("")
    (src / "mnistlab" / "alpha" / "__init__.py").write_text("from .inner import x\n")
    (src / "mnistlab" / "alpha" / "inner.py").write_text("from ..beta import y\nfrom mnistlab import gamma\nx = 1\n")
    (src / "mnistlab" / "beta" / "__init__.py").write_text("y = 2\n")
    (src / "mnistlab" / "gamma.py").write_text("import mnistlab.beta\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.py").write_text("from mnistlab.alpha import x\n")
    parts = diagram.parts_of(tmp_path)
    assert parts["alpha"].imports == {"beta", "gamma"}
    assert parts["gamma"].imports == {"beta"}
    assert parts["entry scripts"].imports == {"alpha"}
    assert diagram.rows_of(parts) == [["entry scripts"], ["alpha"], ["gamma"], ["beta"]]
