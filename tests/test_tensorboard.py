"""What TensorBoard and the other loggers show of a run: each picture beside its scalars, the best validation score."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import run_script, train, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

# 390 training images in batches of 10: 39 optimizer steps an epoch.
TINY = ("model=linear", "data.download=false", "data.verify=false", "data.val_size=10", "data.batch_size=10")


def test_the_confusion_matrices_sit_at_the_steps_of_their_stage_scalars(tmp_path: Path) -> None:
    """The val matrix was drawn at trainer.global_step, one past the step Lightning logs val/acc at: in
    TensorBoard the image slider and the curves named different steps for the same validation."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run = train(tmp_path / "run", *TINY, f"data.root={data}", "trainer.max_epochs=2")
    events = EventAccumulator(str(run.dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    for stage in ("val", "test"):
        images = [e.step for e in events.Images(f"{stage}/confusion_matrix")]
        assert images == [e.step for e in events.Scalars(f"{stage}/acc")], stage
    assert [e.step for e in events.Images("val/confusion_matrix")] == [38, 77]


def test_the_csv_logger_gets_the_best_validation_score_tensorboard_gets(tmp_path: Path) -> None:
    """val/acc_best, which a sweep ranks its jobs by, went to TensorBoard alone: metrics.csv (and MLflow's run,
    through the same logger call) had no column for it."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run = train(tmp_path / "run", *TINY, f"data.root={data}", "trainer.max_epochs=1", "logger=csv")
    with (run.dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/acc_best")]
    assert [(int(row["step"]), float(row["val/acc_best"])) for row in rows] == [(39, run.metrics["val/acc_best"])]


def logged(run_dir: Path) -> list[tuple[str, int, object]]:
    """(tag, step, value) of every summary in the folder's event files, as any TensorBoard reader gets them."""
    return [
        (value.tag, event.step, value)
        for path in sorted(run_dir.glob("events.out.tfevents.*"))
        for event in LegacyEventFileLoader(str(path)).Load()
        for value in event.summary.value
    ]


def test_a_new_run_from_another_runs_checkpoint_shows_its_training_samples(tmp_path: Path) -> None:
    """train/samples was skipped wherever global_step > 0 (meant for resume=, whose first launch logged it), so a
    ckpt_path= run, in a folder of its own, had no training samples at all."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    first = train(tmp_path / "first", *TINY, f"data.root={data}", "trainer.max_epochs=1")
    second = train(tmp_path / "second", *TINY, f"data.root={data}", "trainer.max_epochs=2", f"ckpt_path={first.dir}")
    resumed = run_script("train.py", f"resume={first.dir}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [step for tag, step, _ in logged(second.dir) if tag == "train/samples"] == [0]
    assert [step for tag, step, _ in logged(first.dir) if tag == "train/samples"] == [0]  # not again on resume
