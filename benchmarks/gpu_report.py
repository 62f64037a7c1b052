"""The report of ``scripts/gpu_check.sh``: device, versions, GPU test results and benchmark tables.

``python benchmarks/gpu_report.py WORK_DIR OUT_DIR`` reads what the script's steps left in WORK_DIR
(``steps.tsv``: one ``name, exit code, seconds, log file, benchmark JSON or -`` line per step;
``junit.xml`` of ``pytest -m gpu``; ``packages.json``: each package the check uses, judged against its
range by ``scripts/gpu_wheels.py judge``) and writes ``OUT_DIR/gpu_report.md`` and ``OUT_DIR/gpu_report.json``
with the same figures, the JSON also holding every step's log.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC
from pathlib import Path
from typing import Any

LOG_CHARS = 50_000  # tail of each step's log kept in the JSON


def device() -> dict[str, Any]:
    """The accelerator the tests and the benchmark saw (CUDA_VISIBLE_DEVICES applies)."""
    try:
        import torch
    except ImportError as e:  # the install step failed: the report still says what happened
        return {"type": "unknown", "error": str(e)}
    if not torch.cuda.is_available():
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "type": "cuda",
        "name": props.name,
        "count": torch.cuda.device_count(),
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        info["driver"] = subprocess.run(smi, capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
    return info


def read_packages(work: Path) -> list[dict[str, Any]]:
    """``packages.json``: name, version (None: not installed), range, whether it ``admits`` the version, and
    whether the check ``installed`` it from the wheels (else the host had it); [] where it was not judged."""
    path = work / "packages.json"
    return json.loads(path.read_text()) if path.is_file() else []


def package_line(package: dict[str, Any]) -> str:
    """One package of the report, e.g. ``- pytest: 8.4.1, **outside the range** >=9.0.3 (the host's)``."""
    name, version, spec = package["name"], package["version"], package["range"]
    if version is None:
        return f"- {name}: not installed (range {spec or 'none'})"
    verdict = f"in the range {spec}" if package["admits"] else f"**outside the range** {spec}"
    source = "installed from the wheels" if package["installed"] else "the host's"
    return f"- {name}: {version}, {verdict if spec else 'no range'} ({source})"


def test_results(junit: Path) -> dict[str, Any]:
    """Outcome, seconds, message and recorded properties of each test in a pytest JUnit XML file."""
    if not junit.is_file():
        return {"counts": {}, "cases": []}
    cases = []
    for case in ET.parse(junit).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            if (node := case.find(tag)) is not None:
                outcome, message = {"failure": "failed"}.get(tag, tag), node.get("message", "")
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        cases.append({"name": name, "outcome": outcome, "seconds": float(case.get("time", 0)), "message": message,
                      "properties": props})  # fmt: skip
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"counts": counts, "cases": cases}


def read_steps(work: Path) -> list[dict[str, Any]]:
    steps = []
    with open(work / "steps.tsv", newline="") as f:
        for name, rc, seconds, log, result in csv.reader(f, delimiter="\t"):
            text = Path(log).read_text(errors="replace") if Path(log).is_file() else ""
            step: dict[str, Any] = {"name": name, "rc": int(rc), "seconds": float(seconds), "log": text[-LOG_CHARS:]}
            if result != "-":
                step["table"] = "\n".join(line for line in text.splitlines() if line.startswith("|"))
                step["results"] = json.loads(Path(result).read_text()) if Path(result).is_file() else None
            steps.append(step)
    return steps


def default_run(results: dict[str, Any] | None) -> dict[str, Any] | None:
    """The benchmark's mnistlab row: (b), the one compared with the plain loop (a)."""
    pipelines = (results or {}).get("pipelines") or []
    return next((p for p in pipelines if p.get("name", "").startswith("(b)")), None)


def targets(steps: list[dict[str, Any]], tests: dict[str, Any], mode: str) -> list[tuple[str, str, bool | None]]:
    """The issue's GPU targets: (what, measured, met); met is None where nothing was measured or on the CPU."""
    bench = {s["name"]: s for s in steps if "table" in s}
    b32 = default_run(bench.get("benchmark: batch 32", {}).get("results"))
    acc = next((c["properties"].get("test_acc") for c in tests["cases"] if "notebook" in c["name"]), None)
    rows = [
        ("hidden, batch 32: (b) s/epoch < 1", f"{b32['median_s']:.3f}" if b32 else "n/a", b32 and b32["median_s"] < 1),
        ("(b) <= 1.3x the plain loop (a)", f"{b32['ratio']:.2f}x" if b32 else "n/a", b32 and b32["ratio"] <= 1.3),
        ("experiment=notebook_hidden test/acc >= 0.970", acc or "n/a", float(acc) >= 0.970 if acc else None),
    ]
    return [(what, value, None if mode == "cpu" or met is None else bool(met)) for what, value, met in rows]


def markdown(report: dict[str, Any]) -> str:
    mark = {True: "yes", False: "**no**", None: "n/a"}
    lines = [
        f"# GPU check ({report['mode']} mode)",
        "",
        f"{report['finished']}, {report['total_seconds']:.0f} s in all, exit code {report['rc']}.",
        "",
        "## Device",
        "",
        *[f"- {k}: {v}" for k, v in report["device"].items()],
        "",
        "## Versions",
        "",
        f"Python {report['versions']['python']}. Each package the check uses, against its range in pyproject.toml",
        "(one that pyproject does not name: what the installed packages require of it). The host's own packages",
        "stay as they are: one outside its range is reported here, not a failure.",
        "",
        *([package_line(p) for p in report["packages"]] or ["(not judged: see logs/install.log)"]),
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
        *[f"| {what} | {value} | {mark[met]} |" for what, value, met in report["targets"]],
        "",
        "## Tests (pytest -m gpu)",
        "",
        ", ".join(f"{n} {k}" for k, n in sorted(report["tests"]["counts"].items())) or "no results",
        "",
        "| test | outcome | s | message / figures |",
        "| --- | --- | --- | --- |",
    ]
    for c in report["tests"]["cases"]:
        details = "; ".join([c["message"][:200].replace("\n", " "), *(f"{k}={v}" for k, v in c["properties"].items())])
        lines.append(f"| {c['name']} | {c['outcome']} | {c['seconds']:.1f} | {details.strip('; ').replace('|', '/')} |")
    lines += ["", f"## Benchmark (device={report['benchmark_device']})", ""]
    for s in report["steps"]:
        if "table" in s:
            lines += [f"### {s['name'].removeprefix('benchmark: ')}", "", s["table"] or "(no table: see the log)", ""]
    lines += ["## Steps", "", "| step | exit code | s |", "| --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['rc']} | {s['seconds']:.1f} |" for s in report["steps"]]
    return "\n".join(lines) + "\n"


def write_report(work: Path, out: Path, mode: str, total_seconds: float) -> dict[str, Any]:
    """Writes ``gpu_report.md`` and ``gpu_report.json`` into ``out``; returns the JSON's content."""
    from datetime import datetime

    steps = read_steps(work)
    tests = test_results(work / "junit.xml")
    packages = read_packages(work)
    report = {
        "mode": mode,
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "total_seconds": total_seconds,
        "rc": max((s["rc"] for s in steps), default=0),
        "device": device(),
        "versions": {"python": platform.python_version(), **{p["name"]: p["version"] for p in packages}},
        "packages": packages,
        "benchmark_device": "cpu" if mode == "cpu" else "cuda",
        "targets": targets(steps, tests, mode),
        "tests": tests,
        "steps": steps,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_report.md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    work_dir, out_dir, run_mode, seconds = sys.argv[1:5]
    written = write_report(Path(work_dir), Path(out_dir), run_mode, float(seconds))
    for package in written["packages"]:
        if package["version"] is not None and not package["admits"]:  # the host's image: said, not failed
            name, version, spec = package["name"], package["version"], package["range"]
            print(f"note: {name} {version} is outside its range {spec}, the host's own (see gpu_report.md)")
