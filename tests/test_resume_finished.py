"""``resume=`` of a run that has nothing left to train is refused in one line, whatever ended it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script, train


def test_a_run_ended_by_max_steps_is_not_resumed_into_nothing(tmp_path: Path) -> None:
    """Lightning stops at max_steps whatever max_epochs says: such a resume would train nothing and test again."""
    run = train(tmp_path / "run", "model=linear", "trainer.max_steps=12", "data.val_size=500")
    assert json.loads((run.dir / "metrics.json").read_text())["epochs"] == 1
    for extra in ((), ("trainer.max_epochs=10",)):
        result = run_script("train.py", f"resume={run.dir}", *extra, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip() == (
            f"error: resume={run.dir}: the run has finished its trainer.max_steps=12 steps and its test, "
            "and a resumed run keeps its max_steps: there is nothing left to train"
        )
