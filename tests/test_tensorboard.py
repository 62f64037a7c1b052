"""What TensorBoard shows of a run: each picture beside its scalars, and a resumed run as one run."""

from __future__ import annotations

from pathlib import Path

from conftest import train, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
