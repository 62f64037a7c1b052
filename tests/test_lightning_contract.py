"""Lightning's contract on real MNIST: every Trainer flag and callback does what Lightning documents.

Each test runs a short fit through ``mnistlab.composition.compose`` (what ``scripts/train.py``
builds) and checks the documented effect, in batches, under the engine the run chose.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from conftest import DATA_DIR, compose_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.composition import Run, compose
from mnistlab.errors import MnistlabError
from mnistlab.training import fit_and_test

pytestmark = pytest.mark.slow
BATCHES_B32 = math.ceil(55_000 / 32)  # 1,719 batches of the 55k training split at batch 32
BATCHES_B256 = math.ceil(55_000 / 256)  # 215
QUIET = ["callbacks.progress_bar.refresh_rate=0", "~callbacks.sample_images", "~callbacks.test_report"]


class BatchRecorder(pl.Callback):
    """A user's callback: records what ``on_train_batch_start``/``_end`` receive."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, int, tuple[int, ...]]] = []  # (epoch, batch_idx, x.shape)
        self.ends = 0
        self.labels: dict[int, list[torch.Tensor]] = {}
        self.lrs: list[float] = []  # the learning rate each optimizer step uses
        self.param_deltas: list[float] = []
        self._before: torch.Tensor | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        x, y = batch  # a pair, as Lightning documents, never a list of batches
        self.starts.append((trainer.current_epoch, batch_idx, tuple(x.shape)))
        self.labels.setdefault(trainer.current_epoch, []).append(y.clone())
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self._before = torch.cat([p.detach().flatten() for p in pl_module.parameters()])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ends += 1
        after = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.param_deltas.append(float((after - self._before).norm()))


def build(tmp_path: Path, *overrides: str, callbacks: list[pl.Callback] = ()) -> Run:
    cfg = compose_train([*QUIET, *overrides], tmp_path, DATA_DIR)
    return compose(cfg, callbacks)


def fit(tmp_path: Path, *overrides: str, callbacks: list[pl.Callback] = ()) -> Run:
    """Composes and fits; ``callbacks`` are added to the config's as a user's ``+callbacks.x`` would be."""
    run = build(tmp_path, *overrides, callbacks=callbacks)  # a user's callback decides the engine too
    run.trainer.fit(run.system, datamodule=run.datamodule)
    return run


def scalars(run: Run) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the TensorBoard logger wrote: tag -> [(step, value)]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(run.trainer.logger.log_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_chunked_engine_logs_validates_and_checkpoints_like_the_per_step_loop(tmp_path: Path) -> None:
    common = (
        "data.batch_size=256", "trainer.max_epochs=2", "trainer.log_every_n_steps=20", "scheduler=one_cycle",
        "callbacks.last_checkpoint.every_n_steps=60",
        "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint", "+callbacks.steps.save_top_k=-1",
        "+callbacks.steps.every_n_train_steps=100", "+callbacks.steps.filename='s{step}'",
    )  # fmt: skip
    chunked = fit(tmp_path / "c", *common, "engine=chunked")
    per_step = fit(tmp_path / "p", *common, "engine=per_step")
    assert chunked.engine.chunk == 20 and per_step.engine.chunk is None
    assert chunked.trainer.global_step == per_step.trainer.global_step == 2 * BATCHES_B256
    a, b = scalars(chunked), scalars(per_step)
    assert sorted(a) == sorted(b)
    for tag in a:
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]], tag  # same x-axis, batch for batch
        assert [v for _, v in a[tag]] == pytest.approx([v for _, v in b[tag]], rel=1e-4, abs=1e-5), tag
    assert [s for s, _ in a["train/loss_step"]] == list(range(19, 2 * BATCHES_B256, 20))
    for p, q in zip(chunked.system.parameters(), per_step.system.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)  # the same optimizer steps on the same batches
    # The schedule ran its whole length and ended at its final learning rate under both engines.
    for run in (chunked, per_step):
        sched = run.trainer.lr_scheduler_configs[0].scheduler
        assert sched.last_epoch == 2 * BATCHES_B256
        assert run.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(sched.get_last_lr()[0])
        assert sched.get_last_lr()[0] < 1e-6
        assert run.trainer.estimated_stepping_batches == 2 * BATCHES_B256
    for run in (chunked, per_step):  # step-interval checkpoints at the same multiples of 100
        files = sorted(p.name for p in (Path(run.trainer.default_root_dir) / "checkpoints").glob("s*.ckpt"))
        assert files == ["sstep=100.ckpt", "sstep=200.ckpt", "sstep=300.ckpt", "sstep=400.ckpt"]


def test_without_validation_a_users_step_checkpoints_are_still_written(tmp_path: Path) -> None:
    # Only the checkpoint ranked by val/acc has nothing to rank by; one every N steps saves as Lightning documents.
    run = build(
        tmp_path, "experiment=notebook_hidden", "data.batch_size=256", "trainer.max_epochs=1",
        "trainer.limit_train_batches=20", "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        "+callbacks.steps.dirpath=${paths.output_dir}/steps", "+callbacks.steps.every_n_train_steps=10",
        "+callbacks.steps.save_top_k=-1", "+callbacks.steps.filename='s{step}'",
    )  # fmt: skip
    out = Path(run.trainer.default_root_dir)
    metrics = fit_and_test(run.trainer, run.system, run.datamodule, out)
    assert sorted(p.name for p in (out / "steps").glob("*.ckpt")) == ["sstep=10.ckpt", "sstep=20.ckpt"]
    assert not (out / "checkpoints" / "best.ckpt").exists() and "val/acc_best" not in metrics  # final weights tested


def test_a_user_callback_sees_every_batch_as_a_pair_and_the_progress_bar_counts_batches(tmp_path: Path) -> None:
    recorder = BatchRecorder()
    run = fit(tmp_path, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=1", callbacks=[recorder])
    assert run.engine.chunk is None and "BatchRecorder" in run.engine.reason
    assert len(recorder.starts) == recorder.ends == BATCHES_B32 == run.trainer.global_step
    assert [i for _, i, _ in recorder.starts] == list(range(BATCHES_B32))
    assert recorder.starts[0][2] == (32, 1, 28, 28)
    bar = run.trainer.progress_bar_callback
    assert bar.total_train_batches == BATCHES_B32 and bar.train_progress_bar.n == BATCHES_B32


def test_the_default_chunked_run_shows_batches_in_its_progress_bar(tmp_path: Path) -> None:
    run = fit(tmp_path, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=1", "data.batch_size=256")
    assert run.engine.chunk == 50
    bar = run.trainer.progress_bar_callback
    assert bar.total_train_batches == BATCHES_B256 and bar.train_progress_bar.n == BATCHES_B256


def test_learning_rate_monitor_logs_every_log_every_n_steps_batches(tmp_path: Path) -> None:
    run = fit(
        tmp_path, "scheduler=cosine", "trainer.max_epochs=1", "trainer.log_every_n_steps=10", "data.batch_size=256",
        "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor",
        "+callbacks.lr_monitor.logging_interval=step",
    )  # fmt: skip
    assert run.engine.chunk is None and "LearningRateMonitor" in run.engine.reason
    lr = scalars(run)["lr-Adam"]
    assert [s for s, _ in lr] == list(range(9, BATCHES_B256, 10))
    values = [v for _, v in lr]
    assert values == sorted(values, reverse=True) and values[0] > 10 * values[-1]  # the cosine decay, point by point


def test_accumulate_grad_batches_takes_half_the_optimizer_steps(tmp_path: Path) -> None:
    run = fit(tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=100", "trainer.accumulate_grad_batches=2")
    assert run.engine.chunk is None
    assert run.trainer.global_step == 50


def test_limit_train_batches_takes_that_many_steps_and_the_schedule_still_ends(tmp_path: Path) -> None:
    recorder = BatchRecorder()
    run = fit(tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=100", "scheduler=one_cycle",
              callbacks=[recorder])  # fmt: skip
    assert run.trainer.global_step == 200 == len(recorder.lrs)
    assert run.trainer.lr_scheduler_configs[0].scheduler.total_steps == 200
    assert max(recorder.lrs) == pytest.approx(1e-3)
    assert recorder.lrs[-1] == pytest.approx(1e-3 / 25 / 1e4)  # the last step used the schedule's final rate


def test_the_int_one_means_one_batch(tmp_path: Path) -> None:
    """``limit_train_batches=1`` and ``val_check_interval=1`` are one batch (Lightning), not the float 1.0 (all)."""
    run = fit(tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=1", "trainer.val_check_interval=1",
              "scheduler=one_cycle")  # fmt: skip
    assert run.engine.name == "per_step" and run.trainer.global_step == 2
    assert len(scalars(run)["val/acc"]) == 2  # after the one batch of each epoch


def test_gradient_clip_val_bounds_the_gradient_norm(tmp_path: Path) -> None:
    # Plain SGD moves the weights by lr * gradient, so the step's size bounds the clipped gradient's norm.
    opts = ("optimizer=sgd", "optimizer.lr=1.0", "optimizer.momentum=0", "trainer.max_epochs=1",
            "trainer.limit_train_batches=30")  # fmt: skip
    clipped, free = BatchRecorder(), BatchRecorder()
    fit(tmp_path / "clip", *opts, "trainer.gradient_clip_val=0.5", callbacks=[clipped])
    fit(tmp_path / "free", *opts, callbacks=[free])
    assert max(clipped.param_deltas) <= 0.5 * (1 + 1e-4)
    assert max(free.param_deltas) > 0.5  # the bound above is not vacuous


def test_val_check_interval_half_validates_twice_an_epoch(tmp_path: Path) -> None:
    run = fit(tmp_path, "trainer.max_epochs=1", "trainer.val_check_interval=0.5", "data.batch_size=256")
    steps = [s for s, _ in scalars(run)["val/acc"]]
    assert len(steps) == 2 and steps[0] < BATCHES_B256 // 2 + 1 < steps[1]


def test_overfit_batches_trains_on_the_same_batches_every_epoch(tmp_path: Path) -> None:
    recorder = BatchRecorder()
    run = fit(tmp_path, "trainer.max_epochs=3", "trainer.overfit_batches=2", callbacks=[recorder])
    assert run.trainer.global_step == 6
    epochs = [torch.cat(recorder.labels[e]) for e in range(3)]
    assert len(epochs[0]) == 64 and all(torch.equal(epochs[0], e) for e in epochs[1:])
    _, train_labels = run.datamodule.train_set
    assert torch.equal(epochs[0], train_labels[:64].cpu())  # the first two batches, unshuffled


def test_max_epochs_minus_one_trains_by_steps(tmp_path: Path) -> None:
    run = fit(tmp_path, "trainer.max_epochs=-1", "trainer.max_steps=70", "scheduler=cosine")
    assert run.engine.chunk is None and run.trainer.global_step == 70
    assert run.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 70


def test_fast_dev_run_detect_anomaly_and_profiler_take_the_per_step_engine(tmp_path: Path) -> None:
    run = fit(tmp_path / "dev", "trainer.fast_dev_run=true")
    assert run.trainer.global_step == 1 and "fast_dev_run" in run.engine.reason
    assert not (tmp_path / "dev" / "run" / "checkpoints").exists()  # no last.ckpt either: Lightning saves none then
    run = fit(tmp_path / "prof", "trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.profiler=simple",
              "trainer.detect_anomaly=true")  # fmt: skip
    assert "trainer.profiler" in run.engine.reason and "trainer.detect_anomaly" in run.engine.reason
    durations = run.trainer.profiler.recorded_durations
    assert len(durations["run_training_batch"]) == 20  # one profiled region per batch


def test_early_stopping_and_no_progress_bar_keep_the_chunked_engine(tmp_path: Path) -> None:
    run = fit(
        tmp_path, "trainer.max_epochs=5", "data.batch_size=256", "trainer.enable_progress_bar=false",
        "+callbacks.early_stop._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.early_stop.monitor=val/acc", "+callbacks.early_stop.mode=max",
        "+callbacks.early_stop.min_delta=1.0", "+callbacks.early_stop.patience=1",
    )  # fmt: skip
    assert run.engine.chunk == 50 and run.trainer.progress_bar_callback is None
    assert run.trainer.current_epoch == 2  # no epoch can improve val/acc by 1.0: stop after patience


def test_without_a_logger_chunks_still_end_at_the_logging_steps(tmp_path: Path) -> None:
    # The progress bar's train/loss_step and the divergence check come at Lightning's logging steps,
    # which log_every_n_steps sets with or without a logger.
    run = build(tmp_path, "~logger", "trainer.log_every_n_steps=30")
    assert run.trainer.loggers == [] and run.engine.chunk == 30


def test_stochastic_weight_averaging_steps_its_schedule_per_epoch(tmp_path: Path) -> None:
    run = fit(
        tmp_path, "trainer.max_epochs=3", "trainer.limit_train_batches=40",
        "+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
        "+callbacks.swa.swa_lrs=0.01", "+callbacks.swa.swa_epoch_start=1", "+callbacks.swa.annealing_epochs=2",
    )  # fmt: skip
    assert run.engine.chunk is None
    swa = next(cb for cb in run.trainer.callbacks if type(cb).__name__ == "StochasticWeightAveraging")
    assert run.trainer.lr_scheduler_configs[0].interval == "epoch"
    # SWALR stepped at most once per epoch (plus its construction): per optimizer step it would be 80.
    assert swa._swa_scheduler._step_count <= 3 + 1
    assert swa.n_averaged.item() == 3  # the weights averaged in from swa_epoch_start on


def test_forcing_chunks_with_a_setting_they_cannot_honour_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(MnistlabError, match=r"engine=chunked cannot honour trainer.gradient_clip_val"):
        build(tmp_path, "engine=chunked", "trainer.gradient_clip_val=0.5")
    with pytest.raises(MnistlabError, match="engine='turbo' is unknown"):
        build(tmp_path, "engine=turbo")


def test_either_engine_resumes_the_others_checkpoint(tmp_path: Path) -> None:
    args = ("data.batch_size=256",)
    for first, then in (("chunked", "per_step"), ("per_step", "chunked")):
        done = fit(tmp_path / first, *args, "trainer.max_epochs=1", f"engine={first}")
        last = Path(done.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        resumed = build(tmp_path / f"{first}-{then}", *args, "trainer.max_epochs=2", f"engine={then}")
        resumed.trainer.fit(resumed.system, datamodule=resumed.datamodule, ckpt_path=str(last))
        assert resumed.trainer.global_step == 2 * BATCHES_B256, (first, then)
        steps = [s for s, _ in scalars(resumed)["train/loss_step"]]
        assert steps == list(range(BATCHES_B256 + 49 - BATCHES_B256 % 50, 2 * BATCHES_B256, 50))  # counted on


class Interrupted(Exception):
    """Stands in for a kill: raised by the training step once the run has passed a mid-epoch checkpoint."""


@pytest.mark.parametrize("engine", ["chunked", "per_step"])
def test_a_mid_epoch_resume_ends_with_exactly_the_uninterrupted_weights(engine: str, tmp_path: Path) -> None:
    args = ("data.batch_size=256", "trainer.max_epochs=2", "callbacks.last_checkpoint.every_n_steps=100",
            "scheduler=one_cycle", "data/augment=affine", f"engine={engine}")  # fmt: skip
    whole = fit(tmp_path / "whole", *args)
    broken = build(tmp_path / "broken", *args)
    step = broken.system.training_step

    def training_step(batch: Any, batch_idx: int) -> Any:
        if broken.trainer.global_step >= 150:  # past the checkpoint at step 100, inside epoch 0
            raise Interrupted
        return step(batch, batch_idx)

    broken.system.training_step = training_step
    with pytest.raises(Interrupted):
        broken.trainer.fit(broken.system, datamodule=broken.datamodule)
    last = Path(broken.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 100
    resumed = build(tmp_path / "resumed", *args)
    resumed.trainer.fit(resumed.system, datamodule=resumed.datamodule, ckpt_path=str(last))
    assert resumed.trainer.global_step == whole.trainer.global_step == 2 * BATCHES_B256
    for a, b in zip(whole.system.state_dict().values(), resumed.system.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # bit for bit: same batches, same augmentation draws, same schedule


def test_double_precision_trains_in_float64_and_both_engines_agree(tmp_path: Path) -> None:
    # The model summary feeds example_input_array to the network as it is: it must be float64 too.
    args = ("trainer.precision=64", "data.batch_size=256", "trainer.max_epochs=1", "+trainer.limit_val_batches=2")
    runs = {engine: fit(tmp_path / engine, *args, f"engine={engine}") for engine in ("chunked", "per_step")}
    assert {run.engine.name for run in runs.values()} == {"chunked", "per_step"}
    weights = {engine: [p.detach() for p in run.system.parameters()] for engine, run in runs.items()}
    assert all(p.dtype == torch.float64 for p in weights["chunked"])
    assert all(torch.equal(a, b) for a, b in zip(weights["chunked"], weights["per_step"], strict=True))
