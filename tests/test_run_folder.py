"""The README's list of a first run's folder is what the run writes, file for file, with no empty file."""

from __future__ import annotations

import fnmatch

from conftest import ROOT, TrainedRun

HEADER = "```text unchecked: a folder listing"


def documented() -> list[str]:
    """The paths (or globs) of the README's run-folder block, one per line."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(HEADER) :].split("\n```", 1)[0].splitlines()[1:]
    return [line.split()[0] for line in block if line.strip()]


def test_first_run_folder_is_the_readme_list(notebook_hidden_run: TrainedRun) -> None:
    """``experiment=notebook_hidden`` (the first set-up command): each listed entry matches, nothing else exists."""
    found = sorted(
        str(p.relative_to(notebook_hidden_run.dir)) for p in notebook_hidden_run.dir.rglob("*") if p.is_file()
    )
    listed = documented()
    assert listed, "no listing found in the README"
    for entry in listed:
        assert fnmatch.filter(found, entry), f"the README lists {entry}, the run wrote none"
    extra = [f for f in found if not any(fnmatch.fnmatch(f, entry) for entry in listed)]
    assert not extra, f"the run wrote files the README does not list: {extra}"
    assert "checkpoints/best.ckpt" not in found  # no validation in the notebook recipe: the README says so
    empty = [f for f in found if (notebook_hidden_run.dir / f).stat().st_size == 0]
    assert not empty, f"empty files: {empty}"
    assert (notebook_hidden_run.dir / "hparams.yaml").read_text().strip() not in ("", "{}")
