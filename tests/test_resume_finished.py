"""``resume=`` of a run that has nothing left to train is refused in one line, whatever ended it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script, train, write_idx_set


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


def test_a_run_ended_by_max_time_is_refused_more_epochs_and_takes_more_time(tmp_path: Path) -> None:
    """Before: Lightning's Timer, restored from the checkpoint, stopped the resumed run at once: it trained nothing,
    tested again and rewrote metrics.json, without a word; and +trainer.max_time was refused on resume."""
    run = train(tmp_path / "run", "model=linear", "+trainer.max_time=00:00:00:02", "trainer.max_epochs=100")
    first = json.loads((run.dir / "metrics.json").read_text())
    assert first["epochs"] < 100
    more = run_script("train.py", f"resume={run.dir}", "trainer.max_epochs=200", cwd=tmp_path)
    assert more.returncode == 2, more.stderr[-2000:]
    assert more.stderr.strip() == (
        f"error: resume={run.dir}: the run has used its trainer.max_time=00:00:00:02 and finished its test; "
        "add +trainer.max_time=DD:HH:MM:SS, longer, to train it further"
    )
    assert json.loads((run.dir / "metrics.json").read_text()) == first
    longer = run_script("train.py", f"resume={run.dir}", "+trainer.max_time=00:00:00:04", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-2000:]
    resumed = json.loads((run.dir / "metrics.json").read_text())
    assert resumed["fit_seconds"] > 1 and 1 < resumed["fit_seconds_earlier"] <= first["fit_seconds"]  # it trained on


def test_a_max_epochs_that_cannot_be_honoured_is_refused_before_any_output_or_write(tmp_path: Path) -> None:
    """Before: the Trainer was built (two log lines), a logger opened a new event file in the finished run's
    folder and Hydra rewrote its ``.hydra/resume`` records; only then the range check refused it."""
    run = train(tmp_path / "run", "model=linear", "trainer.limit_train_batches=5", "trainer.max_epochs=1")
    before = {p: p.read_bytes() for p in run.dir.rglob("*") if p.is_file()}
    for epochs in (0, -1):
        result = run_script("train.py", f"resume={run.dir}", f"trainer.max_epochs={epochs}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stdout == "" and result.stderr.splitlines() == [
            f"error: trainer.max_epochs={epochs} is out of range: must be an integer >= 1"
        ]
    assert {p: p.read_bytes() for p in run.dir.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no outputs/ either


def test_a_scheduled_one_epoch_run_is_refused_a_new_length_in_the_singular(tmp_path: Path) -> None:
    """Before: "its scheduler was sized for 1 epochs"."""
    data = write_idx_set(tmp_path / "tiny")
    args = (f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10")
    run = train(tmp_path / "run", "model=linear", "scheduler=one_cycle", "trainer.max_epochs=1", *args)
    result = run_script("train.py", f"resume={run.dir}", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"error: resume={run.dir} cannot change trainer.max_epochs: its scheduler was sized for 1 epoch, and a "
        "scheduled checkpoint cannot start a new run either; train a new run for longer"
    ]
