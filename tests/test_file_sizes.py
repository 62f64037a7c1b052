"""The house's sizes: an entry script composes its config and calls one package function, a module holds one concept."""

from __future__ import annotations

import pytest
from conftest import ROOT

ENTRY_SCRIPTS = ("train.py", "evaluate.py", "predict.py", "export.py", "serve.py")


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_an_entry_script_is_at_most_60_lines(script: str) -> None:
    """Before, train.py was 75 lines: its job (checks, continued config, compose, fit) is now ``training.train``."""
    lines = (ROOT / "scripts" / script).read_text().splitlines()
    assert len(lines) <= 60, f"scripts/{script} is {len(lines)} lines: move what is not composition into the package"


def test_the_system_module_is_at_most_300_lines() -> None:
    """Before, classifier.py was 319 lines: the stage metrics' read at an epoch's end is in ``systems/metrics.py``."""
    lines = (ROOT / "src" / "mnistlab" / "systems" / "classifier.py").read_text().splitlines()
    assert len(lines) <= 300, f"systems/classifier.py is {len(lines)} lines: split out a concept of its own"


def test_the_resume_module_is_at_most_300_lines() -> None:
    """Before, resume/run.py was 306 lines: a continued run's loggers (``mark_restart``) are resume/loggers.py."""
    lines = (ROOT / "src" / "mnistlab" / "resume" / "run.py").read_text().splitlines()
    assert len(lines) <= 300, f"resume/run.py is {len(lines)} lines: split out a concept of its own"


def test_the_override_mistakes_module_is_at_most_300_lines() -> None:
    """Before, override_mistakes.py was 305 lines: a config group's option mistakes are group_mistakes.py."""
    lines = (ROOT / "src" / "mnistlab" / "override_mistakes.py").read_text().splitlines()
    assert len(lines) <= 300, f"override_mistakes.py is {len(lines)} lines: split out a concept of its own"
