"""scripts/gpu_check.sh --cpu: the GPU check's dry run, every step on the CPU, so that the script cannot rot."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, ROOT
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

SECTIONS = ("## Device", "## Versions", "## Targets", "## Tests (pytest -m gpu)", "## Benchmark (device=cpu)")
BENCHMARKS = ("batch 32", "batch 512", "experiment=notebook_hidden")


def test_gpu_check_dry_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The host's Pillow as a GPU image may hold it, below pyproject's range (its metadata, found first): before,
    # the report named no package the check takes from the host (torch, Pillow, onnx, pytest) against its range.
    host = tmp_path / "host"
    (host / "pillow-12.0.dist-info").mkdir(parents=True)
    (host / "pillow-12.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: pillow\nVersion: 12.0\n")
    path = os.pathsep.join(filter(None, (str(host), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHON": sys.executable, "PYTHONPATH": path}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out), "--cpu"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]  # said, not failed
    markdown = (out / "gpu_report.md").read_text()
    for section in (*SECTIONS, *(f"### {name}\n" for name in BENCHMARKS)):
        assert section in markdown, section
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["mode"] == "cpu" and report["device"]["type"] == "cpu" and report["rc"] == 0
    assert report["versions"]["hydra-core"] and report["versions"]["torch"]
    # A line per package the check uses, with its version and whether pyproject's range admits it.
    gw = _gpu_wheels()
    ranges = gw.project_ranges()
    assert [p["name"] for p in report["packages"]] == gw.used()
    assert {"torch", "pillow", "onnx", "pytest"} <= set(gw.used())
    torch_line = f"- torch: {importlib.metadata.version('torch')}, in the range {ranges['torch']} (the host's)"
    assert torch_line in markdown.splitlines()
    assert f"- pillow: 12.0, **outside the range** {ranges['pillow']} (the host's)" in markdown.splitlines()
    assert f"note: pillow 12.0 is outside its range {ranges['pillow']}, the host's own" in result.stdout
    assert [p["name"] for p in report["packages"] if not p["admits"]] == ["pillow"]
    # Every GPU test was collected and skipped for the one allowed reason.
    cases = report["tests"]["cases"]
    assert len(cases) >= 9 and {(c["outcome"], c["message"]) for c in cases} == {("skipped", "no CUDA device")}
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["install", "pytest -m gpu", *(f"benchmark: {name}" for name in BENCHMARKS)]
    assert f"{len(cases)} skipped" in steps["pytest -m gpu"]["log"]
    for name in BENCHMARKS:
        bench = steps[f"benchmark: {name}"]
        assert "| (a) plain PyTorch loop |" in bench["table"] and bench["table"] in markdown
        # A few steps: batches of 5,500, so 10 optimizer steps per epoch of the 55k split (11 of all 60k for the
        # notebook recipe, which has no validation split), one warm-up and one measured epoch.
        per_epoch = 11 if name == "experiment=notebook_hidden" else 10
        assert [p["steps_per_epoch"] for p in bench["results"]["pipelines"]] == [per_epoch] * 4  # (a), (b), (b1), (f)
        assert bench["results"]["device"] == "cpu"
    assert [t[2] for t in report["targets"]] == [None, None, None]  # GPU targets: not judged on the CPU


def _gpu_wheels():
    spec = importlib.util.spec_from_file_location("gpu_wheels", ROOT / "scripts" / "gpu_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wheel_check_reads_the_ranges_not_pins() -> None:
    """What is installed is judged against pyproject's ranges (or a dependent's metadata), never a hand pin."""
    from packaging.specifiers import SpecifierSet

    gw = _gpu_wheels()
    ranges = gw.project_ranges()
    assert str(ranges["hydra-core"]) == str(SpecifierSet(">=1.3.2,<1.4")) and "optuna" in ranges
    assert all("==" not in line for line in (ROOT / "scripts" / "gpu_wheels.txt").read_text().splitlines())
    # This environment holds the README's install, so every listed package is in range: nothing to install.
    assert gw.missing(gw.listed(), ranges) == []
    # A range the installed release falls outside of is reported as a requirement pip can install from.
    assert gw.missing(["optuna"], {"optuna": SpecifierSet(">=999")}) == ["optuna>=999"]
    assert gw.missing(["no-such-package-here"], {}) == ["no-such-package-here"]
    # The report tells a package the check installed into its site folder from one the host had.
    site = Path(importlib.metadata.distribution("optuna").locate_file(""))
    assert gw.judged(["optuna"], ranges, site)[0]["installed"] and not gw.judged(["optuna"], ranges)[0]["installed"]
    # A package pyproject does not name takes its range from what the installed dependents require of it.
    hydra_needs = next(r for r in importlib.metadata.requires("hydra-core") if r.startswith("omegaconf"))
    assert str(gw.needed_ranges(["omegaconf"], {})["omegaconf"]) == str(Requirement(hydra_needs).specifier)
