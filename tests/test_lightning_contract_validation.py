"""Lightning's contract on real MNIST, continued: when validation runs, and what it ranks.

The style and helpers of ``test_lightning_contract.py``: each test fits through ``compose`` (what
``scripts/train.py`` builds) and checks the documented effect under the engine the run chose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Timer
from test_lightning_contract import fit, scalars

pytestmark = pytest.mark.slow


def test_a_time_based_val_check_interval_validates_once_the_time_is_up(tmp_path: Path) -> None:
    # "DD:HH:MM:SS": after the batch in which the interval runs out; zero seconds is after every batch.
    run = fit(tmp_path, "trainer.max_epochs=1", "data.batch_size=5000", "trainer.val_check_interval=00:00:00:00")
    assert run.engine.chunk is None and "trainer.val_check_interval" in run.engine.reason
    assert [s for s, _ in scalars(run)["val/acc"]] == list(range(11))  # 11 batches of the 55k images, 11 validations


def test_a_step_checkpoint_at_an_epochs_end_is_ranked_by_the_validation_after_it(tmp_path: Path) -> None:
    # check_val_every_n_epoch=2: Lightning puts a step save at the last batch of a validating epoch off to that
    # validation's end, so that val/acc is the new one (under chunks it was the validation's two epochs before).
    steps = (
        "data.batch_size=1000", "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2",
        "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint", "+callbacks.steps.monitor=val/acc",
        "+callbacks.steps.every_n_train_steps=110", "+callbacks.steps.mode=max", "+callbacks.steps.save_top_k=-1",
        "+callbacks.steps.auto_insert_metric_name=false", "+callbacks.steps.filename='s{step}-{val/acc:.4f}'",
    )  # fmt: skip
    runs = {engine: fit(tmp_path / engine, *steps, f"engine={engine}") for engine in ("auto", "per_step")}
    for run in runs.values():
        assert run.trainer.global_step == 220  # 55 batches an epoch
        val = [f"{v:.4f}" for _, v in scalars(run)["val/acc"]]  # at steps 110 and 220
        names = sorted(p.name for p in (Path(run.trainer.default_root_dir) / "checkpoints").glob("s*.ckpt"))
        assert names == [f"s110-{val[0]}.ckpt", f"s220-{val[1]}.ckpt"]
    assert "ModelCheckpoint(every_n_train_steps=..., monitor=...)" in runs["auto"].engine.reason


@pytest.mark.parametrize("max_time", ["{seconds: 2}", "00:00:00:02"])
def test_max_epochs_minus_one_trains_until_max_time_is_up(tmp_path: Path, max_time: str) -> None:
    # Lightning's unbounded training (max_epochs=-1), ended by time, in both of its documented forms: before, the
    # dict reached Lightning as a DictConfig (a traceback) and max_epochs=-1 was refused without max_steps.
    run = fit(tmp_path, "trainer.max_epochs=-1", f"+trainer.max_time={max_time}", "data.batch_size=1000")
    timer = next(cb for cb in run.trainer.callbacks if isinstance(cb, Timer))
    assert 2 <= timer.time_elapsed("train") < 10  # the time ended it, soon after it was up
    assert run.trainer.global_step > 55  # past one epoch of 55 batches
