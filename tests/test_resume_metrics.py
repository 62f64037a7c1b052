"""A run resumed mid-epoch logs that epoch's training figures over all its batches, as the uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_script, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# A callback of the test's own (on PYTHONPATH): the run sends itself SIGTERM once past optimizer step 300,
# mid-way through its second epoch (195 steps an epoch: 390 training images in batches of 2).
SELF_TERM = """
import os, signal
import lightning.pytorch as pl

class SelfTerm(pl.Callback):
    sent = False

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= 300 and trainer.ckpt_path is None and not self.sent:  # not in its resume
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
"""


def epoch_figures(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of the epoch's training figures, as TensorBoard shows them over the folder's event files."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in ("train/loss", "train/acc")}


@pytest.mark.parametrize("engine", ["auto", "per_step"])
def test_a_resumed_epochs_training_figures_count_the_batches_before_the_interrupt(tmp_path: Path, engine: str) -> None:
    """The training metrics' state was not in the checkpoint: the resumed epoch's train/loss and train/acc
    averaged only the batches after the resume."""
    (tmp_path / "selfterm.py").write_text(SELF_TERM)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    args = [f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10", "model=linear",
            "data.batch_size=2", "trainer.max_epochs=2", f"engine={engine}",
            "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    whole = run_script("train.py", *args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "run"
    stopped = run_script(
        "train.py", *args, "+callbacks.self_term._target_=selfterm.SelfTerm", f"hydra.run.dir={run_dir}", env=env
    )
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    resumed = run_script("train.py", f"resume={run_dir}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, found = epoch_figures(tmp_path / "whole"), epoch_figures(run_dir)
    for tag, points in expected.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in points] == [194, 389], tag
        assert [value for _, value in found[tag]] == pytest.approx([value for _, value in points], rel=1e-5), tag
