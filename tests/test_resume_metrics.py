"""A run resumed mid-epoch logs that epoch's training figures over all its batches, as the uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_resume import interrupted_at_step_300


def epoch_figures(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of the epoch's training figures, as TensorBoard shows them over the folder's event files."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in ("train/loss", "train/acc")}


@pytest.mark.parametrize("engine", ["auto", "per_step"])
def test_a_resumed_epochs_training_figures_count_the_batches_before_the_interrupt(tmp_path: Path, engine: str) -> None:
    """The training metrics' state was not in the checkpoint: the resumed epoch's train/loss and train/acc
    averaged only the batches after the resume."""
    run_dir, env, _ = interrupted_at_step_300(tmp_path, "trainer.max_epochs=2", f"engine={engine}")
    resumed = run_script("train.py", f"resume={run_dir}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, found = epoch_figures(tmp_path / "whole"), epoch_figures(run_dir)
    for tag, points in expected.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in points] == [194, 389], tag
        assert [value for _, value in found[tag]] == pytest.approx([value for _, value in points], rel=1e-5), tag
