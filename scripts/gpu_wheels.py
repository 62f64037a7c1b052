"""The wheels a GPU host lacks, judged against the project's version ranges (pyproject.toml, one source).

``python scripts/gpu_wheels.py missing``: one requirement per line (``name>=x,<y``) for each package of
scripts/gpu_wheels.txt that this interpreter lacks or has outside its range; scripts/gpu_check.sh installs
those from a wheel folder. A package that pyproject.toml names takes its range from there (dependencies
and every extra); one that only a listed package needs (antlr4, alembic, ...) takes the ranges that the
installed packages' own metadata give it, so no version is ever kept by hand.

``python scripts/gpu_wheels.py resolve``: the versions pip resolves today from pyproject's ranges, one
``name==version`` line for each listed package, for scripts/gpu_wheels.sh to download.

``python scripts/gpu_wheels.py judge SITE``: each package the GPU check uses (``used``) as this interpreter has
it, judged against its range, as JSON for the check's report: most come from the host (torch, Pillow, onnx,
pytest...), whose image cannot be changed, so one outside its range is reported there, not installed over;
SITE is the folder the check installed the missing wheels into.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def listed(path: Path = ROOT / "scripts" / "gpu_wheels.txt") -> list[str]:
    """The package names of the wheel list (comments and the ``sdist`` marker dropped)."""
    return [line.split("#")[0].split()[0] for line in path.read_text().splitlines() if line.split("#")[0].strip()]


# Beside pyproject's dependencies, the packages of its extras that the GPU check uses: pytest and its workers
# (pytest -m gpu -n 4), packaging (this script), the export test's ONNX packages, Optuna (the install step's check).
CHECK_EXTRAS_USED = ("pytest", "pytest-xdist", "packaging", "onnx", "onnxruntime", "onnxscript", "optuna")


def _project(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())["project"]


def project_ranges(path: Path = ROOT / "pyproject.toml") -> dict[str, SpecifierSet]:
    """Each package pyproject.toml names (dependencies and extras) with its range."""
    project = _project(path)
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    ranges: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        ranges[name] = ranges.get(name, SpecifierSet()) & req.specifier
    return ranges


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def needed_ranges(names: list[str], ranges: dict[str, SpecifierSet]) -> dict[str, SpecifierSet]:
    """Each listed name's range: pyproject's, else what the installed distributions require of it."""
    wanted = {canonicalize_name(n): ranges.get(canonicalize_name(n), SpecifierSet()) for n in names}
    for dist in importlib.metadata.distributions():
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:  # a broken metadata line of some other package says nothing of ours
                continue
            name = canonicalize_name(req.name)
            if name in wanted and name not in ranges and (req.marker is None or req.marker.evaluate({"extra": ""})):
                wanted[name] &= req.specifier
    return wanted


def used(path: Path = ROOT / "pyproject.toml") -> list[str]:
    """The packages the GPU check uses: pyproject's dependencies, ``CHECK_EXTRAS_USED``, the wheel list's."""
    names = [Requirement(line).name for line in _project(path)["dependencies"]]
    return list(dict.fromkeys(canonicalize_name(n) for n in [*names, *CHECK_EXTRAS_USED, *listed()]))


def judged(names: list[str], ranges: dict[str, SpecifierSet], site: Path | None = None) -> list[dict[str, Any]]:
    """Each package of ``names`` as this interpreter has it: ``version`` (None: not installed), the ``range`` it is
    judged by (``needed_ranges``), whether that range ``admits`` it, and ``installed``: whether it was installed into
    ``site`` (by scripts/gpu_check.sh, from the wheels) rather than found on the host."""
    out = []
    for name, spec in needed_ranges(names, ranges).items():
        version = installed_version(name)
        where = Path(importlib.metadata.distribution(name).locate_file("")) if version is not None else None
        admits = version is not None and spec.contains(version, prereleases=True)
        installed = site is not None and where is not None and where.resolve() == site.resolve()
        out.append({"name": name, "version": version, "range": str(spec), "admits": admits, "installed": installed})
    return out


def missing(names: list[str], ranges: dict[str, SpecifierSet]) -> list[str]:
    """Requirements of the listed packages that this interpreter does not satisfy."""
    return [f"{j['name']}{j['range']}" for j in judged(names, ranges) if not j["admits"]]


def resolve(names: list[str], ranges: dict[str, SpecifierSet]) -> list[str]:
    """``name==version`` for each listed package, as pip resolves pyproject's ranges of them today."""
    roots = [f"{n}{ranges[canonicalize_name(n)]}" for n in names if canonicalize_name(n) in ranges]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report)]
        subprocess.run([*cmd, *roots], check=True)
        resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                    for i in json.loads(report.read_text())["install"]}  # fmt: skip
    absent = [n for n in names if canonicalize_name(n) not in resolved]
    if absent:
        sys.exit(f"error: {', '.join(absent)} not among what pyproject's ranges resolve to; fix scripts/gpu_wheels.txt")
    return [f"{n}=={resolved[canonicalize_name(n)]}" for n in names]


def main(argv: list[str]) -> int:
    if argv[:1] == ["judge"] and len(argv) == 2:
        print(json.dumps(judged(used(), project_ranges(), Path(argv[1]))))
        return 0
    if argv not in (["missing"], ["resolve"]):
        print("usage: python scripts/gpu_wheels.py missing|resolve|judge SITE", file=sys.stderr)
        return 2
    names, ranges = listed(), project_ranges()
    print("\n".join((missing if argv == ["missing"] else resolve)(names, ranges)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
