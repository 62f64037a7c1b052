"""Training without Lightning's per-step wrappers: same weights, same global_step, hooks still honoured."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import DATA_DIR, compose_train
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from mnistlab.callbacks import LastCheckpoint
from mnistlab.composition import compose
from mnistlab.data import MNISTDataModule
from mnistlab.engine import BatchProgressBar, Engine, choose_engine
from mnistlab.engine.step import plain_precision
from mnistlab.errors import ConfigError, MnistlabError
from mnistlab.models import MLP
from mnistlab.systems import Classifier


class CountOptimizerSteps(pl.Callback):
    """Hooks into every optimizer step, which needs Lightning's wrapped step."""

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        self.calls += 1


def fit(data: Path, tmp_path: Path, callbacks: list[pl.Callback], precision: str = "32-true") -> tuple:
    pl.seed_everything(0, verbose=False)
    engine = Engine(3, "chunked")  # the chunked engine: 15 batches per epoch in chunks of 3
    dm = MNISTDataModule(str(data), download=False, verify=False, val_size=0, batch_size=4, engine=engine)
    system = Classifier(MLP(hidden_units=8), engine=engine)
    trainer = pl.Trainer(
        max_epochs=2,
        precision=precision,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(system, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    return system, trainer


def test_raw_steps_match_lightning_steps(tiny_data: Path, tmp_path: Path) -> None:
    raw, raw_trainer = fit(tiny_data, tmp_path / "raw", [])
    counter = CountOptimizerSteps()
    wrapped, wrapped_trainer = fit(tiny_data, tmp_path / "wrapped", [counter])
    assert raw.fast_path.raw_steps and not wrapped.fast_path.raw_steps
    assert counter.calls == 30  # the callback saw every optimizer step
    assert raw_trainer.global_step == wrapped_trainer.global_step == 30
    for a, b in zip(raw.state_dict().values(), wrapped.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ckpt = torch.load(tmp_path / "raw" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 30  # what a resumed run continues from


def test_bf16_mixed_takes_raw_steps_under_autocast(tiny_data: Path, tmp_path: Path) -> None:
    system, trainer = fit(tiny_data, tmp_path, [], "bf16-mixed")
    assert system.fast_path.raw_steps and trainer.global_step == 30
    assert all(torch.isfinite(p).all() for p in system.parameters())


def test_loss_scaling_keeps_lightning_steps() -> None:
    scaled = MixedPrecision("16-mixed", "cuda", scaler=torch.amp.GradScaler("cuda", enabled=False))
    assert not plain_precision(scaled)  # fp16 on CUDA: the GradScaler needs manual_backward and the wrapped step
    assert plain_precision(MixedPrecision("bf16-mixed", "cpu")) and plain_precision(Precision())


def stop_at_first_validation() -> EarlyStopping:
    return EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=-1.0)  # any val/acc stops the run


@pytest.mark.parametrize(
    ("limit", "name"), [({"min_steps": 7}, "trainer.min_steps"), ({"min_epochs": 2}, "trainer.min_epochs")]
)
def test_a_minimum_beside_early_stopping_takes_the_per_step_engine(limit: dict, name: str) -> None:
    # Lightning holds an early stop until the minimum is met, at a batch, logging every batch meanwhile.
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    stopping = pl.Trainer(**quiet, **limit, callbacks=[stop_at_first_validation()])
    assert choose_engine(stopping).reason == f"{name} (with EarlyStopping) needs Lightning's loop at every batch"
    assert choose_engine(pl.Trainer(**quiet, **limit)).chunk == 50  # nothing can stop early: the minimum is met anyway
    assert choose_engine(pl.Trainer(**quiet, min_epochs=1, callbacks=[stop_at_first_validation()])).chunk == 50
    with pytest.raises(MnistlabError, match=f"engine=chunked cannot honour {name}"):
        choose_engine(stopping, "chunked")


def test_an_early_stop_before_min_steps_ends_at_min_steps_as_lightning_does(tiny_data: Path, tmp_path: Path) -> None:
    trainer = pl.Trainer(
        max_epochs=3, min_steps=32, log_every_n_steps=5, callbacks=[stop_at_first_validation()], logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    engine = choose_engine(trainer)  # chunks of 5 would end the run at 35
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=10, batch_size=2, engine=engine)
    trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm)
    assert engine.chunk is None and trainer.global_step == 32  # 25 batches an epoch: stopped at epoch 0's end


def test_a_negative_logging_interval_is_refused_before_any_work(tmp_path: Path) -> None:
    # Lightning logs at every batch for log_every_n_steps=-1 (step % -1 == 0); chunks logged only at their ends.
    cfg = compose_train(["trainer.log_every_n_steps=-1"], tmp_path, DATA_DIR)
    with pytest.raises(ConfigError, match=r"trainer.log_every_n_steps=-1 is out of range: must be an integer >= 0"):
        compose(cfg)
    # A Trainer built without compose (a notebook's) still gets Lightning's loop, which logs every batch.
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    assert choose_engine(pl.Trainer(**quiet, log_every_n_steps=-1)).chunk is None
    assert choose_engine(pl.Trainer(**quiet, log_every_n_steps=0)).chunk == 50  # 0: no step logging at all


def test_chunks_of_a_run_resumed_from_other_epoch_lengths_end_at_lightnings_counts(
    tiny_data: Path, tmp_path: Path
) -> None:
    # 15 batches of 4 are the checkpoint's 15 steps; at batch 8 its next epoch starts at step 15, not at 1 * 8.
    def fit_steps(name: str, engine: Engine, batch_size: int, ckpt: Path | None = None) -> list[str]:
        dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=0, batch_size=batch_size,
                             engine=engine)  # fmt: skip
        steps = ModelCheckpoint(dirpath=tmp_path / name, filename="{step}", every_n_train_steps=5, save_top_k=-1)
        trainer = pl.Trainer(
            max_epochs=1 if ckpt is None else 2, callbacks=[steps], logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm, ckpt_path=ckpt)
        trainer.save_checkpoint(tmp_path / f"{name}.ckpt")
        return sorted(p.name for p in (tmp_path / name).glob("*.ckpt"))

    assert fit_steps("first", Engine(None, "per_step"), 4) == ["step=10.ckpt", "step=15.ckpt", "step=5.ckpt"]
    per_step = fit_steps("per_step", Engine(None, "per_step"), 8, tmp_path / "first.ckpt")
    chunked = fit_steps("chunked", Engine(5, "chunked"), 8, tmp_path / "first.ckpt")
    assert per_step == chunked == ["step=20.ckpt"]  # steps 16-23: Lightning saves at 20, where a chunk must end


def test_the_engine_names_the_setting_given_not_what_lightning_made_of_it() -> None:
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    timed = choose_engine(pl.Trainer(**quiet, max_time="00:00:05:00"))  # Lightning adds a Timer callback for it
    assert timed.reason == "trainer.max_time (callback Timer) needs Lightning's loop at every batch"
    overfit = choose_engine(pl.Trainer(**quiet, overfit_batches=3))  # and sets limit_train_batches=3 for this
    assert overfit.reason == "trainer.overfit_batches needs Lightning's loop at every batch"
    for count in (True, 3):  # Lightning sets limit_train_batches and max_steps to its count: not the user's settings
        dev = pl.Trainer(**quiet, fast_dev_run=count)
        assert choose_engine(dev).reason == "trainer.fast_dev_run needs Lightning's loop at every batch"
        with pytest.raises(MnistlabError, match=r"cannot honour trainer\.fast_dev_run: those need"):
            choose_engine(dev, "chunked")
    both = choose_engine(pl.Trainer(**quiet, fast_dev_run=True, max_steps=5))  # Lightning runs 1 batch, not 5
    assert both.reason == "trainer.fast_dev_run needs Lightning's loop at every batch"


def test_a_time_based_validation_interval_takes_the_per_step_engine() -> None:
    # Lightning validates after whichever batch the interval runs out in, and sets no val_check_interval then.
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    for every_n_epochs in (1, None):
        timed = pl.Trainer(**quiet, val_check_interval="00:00:01:00", check_val_every_n_epoch=every_n_epochs)
        assert choose_engine(timed).reason == "trainer.val_check_interval needs Lightning's loop at every batch"
        with pytest.raises(MnistlabError, match=r"cannot honour trainer\.val_check_interval: those need"):
            choose_engine(timed, "chunked")


def test_a_step_checkpoint_that_lightning_ranks_after_the_next_validation_takes_the_per_step_engine() -> None:
    # Lightning defers such a save at an epoch's last batch to the validation after it under automatic optimization
    # only: the chunked engine's manual optimization would rank it by the previous validation's val/acc.
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}

    def engine(every_n_epochs: int = 1, **checkpoint: object) -> Engine:
        steps = ModelCheckpoint(every_n_train_steps=10, **checkpoint)
        return choose_engine(pl.Trainer(**quiet, check_val_every_n_epoch=every_n_epochs, callbacks=[steps]))

    for deferred in (engine(2, monitor="val/acc"), engine(monitor="val/acc", save_on_train_epoch_end=False)):
        assert deferred.reason == (
            "ModelCheckpoint(every_n_train_steps=..., monitor=...) needs Lightning's loop at every batch"
        )
    # Saved as the step ends under both optimizations: chunks stay.
    assert engine(2).chunk == engine(monitor="val/acc").chunk == 10
    assert engine(2, monitor="val/acc", save_on_train_epoch_end=True).chunk == 10


class RecordingBar(BatchProgressBar):
    """The chunked engine's bar, recording (epoch, shown count) at each refresh."""

    def __init__(self) -> None:
        super().__init__(refresh_rate=3)
        self.shown: list[tuple[int, int]] = []
        self.descriptions: list[tuple[str, int | None, int]] = []  # (description, total, count) at each refresh

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        before = self.train_progress_bar.n
        super().on_train_batch_end(trainer, *args)
        bar = self.train_progress_bar
        if bar.n != before:
            self.shown.append((trainer.current_epoch, bar.n))
            self.descriptions.append((bar.desc.removesuffix(": "), bar.total, bar.n))


def test_the_progress_bar_moves_through_every_epoch_not_only_the_first(tiny_data: Path, tmp_path: Path) -> None:
    # Lightning calls on_train_epoch_start before it resets the epoch's batch count: the bar took the last
    # epoch's total as already shown and stayed at 0 until the end of every epoch after the first.
    engine = Engine(3, "chunked")
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=0, batch_size=4, engine=engine)
    bar = RecordingBar()
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm)
    assert bar.shown == [(epoch, n) for epoch in (0, 1) for n in (3, 6, 9, 12, 15)]


class BatchCountingClassifier(Classifier):
    """A user's system: its own per-batch hook, which Lightning calls once a chunk under the chunked engine."""

    batches = 0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        type(self).batches += 1


def test_a_system_subclass_with_a_batch_hook_of_its_own_takes_the_per_step_engine(
    tiny_data: Path, tmp_path: Path
) -> None:
    """Before: the chunked engine was chosen and the hook ran once every 50 batches, silently."""
    overrides = ["system._target_=test_chunked.BatchCountingClassifier", "model=linear", "data.val_size=0"]
    cfg = compose_train([*overrides, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"], tmp_path)
    cfg.data.root, cfg.data.download, cfg.data.verify, cfg.data.batch_size = str(tiny_data), False, False, 4
    run = compose(cfg)
    assert run.engine.chunk is None
    assert run.engine.reason == "BatchCountingClassifier.on_train_batch_end needs Lightning's loop at every batch"
    BatchCountingClassifier.batches = 0
    run.trainer.fit(run.system, datamodule=run.datamodule)
    assert BatchCountingClassifier.batches == run.trainer.global_step == 15  # 60 tiny images in batches of 4
    with pytest.raises(MnistlabError, match=r"cannot honour BatchCountingClassifier\.on_train_batch_end"):
        compose(compose_train([*overrides, "engine=chunked"], tmp_path))


@pytest.mark.parametrize("engine", [Engine(3, "chunked"), Engine(None, "per_step")], ids=lambda e: e.name)
def test_the_progress_bar_of_a_run_resumed_mid_epoch_shows_its_epoch_and_total(
    engine: Engine, tiny_data: Path, tmp_path: Path
) -> None:
    # Lightning calls on_train_epoch_start only as an epoch starts, not for the epoch a checkpoint resumes
    # mid-way: the bar kept its opening state, "Training: 7/?", until the next epoch.
    from mnistlab.callbacks import LastCheckpoint

    class Killed(Exception):
        pass

    class KillAfterStep6(pl.Callback):  # at the next hook: Lightning runs checkpoint callbacks last
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            if trainer.global_step > 6:
                raise Killed

    def fit(ckpt_path: Path | None, *callbacks: pl.Callback) -> None:
        dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=0, batch_size=4, engine=engine)
        trainer = pl.Trainer(
            max_epochs=2, logger=False, enable_model_summary=False, default_root_dir=tmp_path,
            callbacks=[LastCheckpoint(str(tmp_path / "checkpoints"), every_n_steps=6), *callbacks],
        )  # fmt: skip
        trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm, ckpt_path=ckpt_path)

    with pytest.raises(Killed):
        fit(None, BatchProgressBar(), KillAfterStep6())  # step 6 of the first epoch's 15, saved there
    bar = RecordingBar()
    fit(tmp_path / "checkpoints" / "last.ckpt", bar)
    # From the next multiple of 3 after the 6 batches done, in the first epoch, as an uninterrupted run shows it.
    epoch_0, epoch_1 = [("Epoch 0", 15, n) for n in (9, 12, 15)], [("Epoch 1", 15, n) for n in (3, 6, 9, 12, 15)]
    assert bar.descriptions == epoch_0 + epoch_1


@pytest.mark.parametrize("engine", [Engine(3, "chunked"), Engine(None, "per_step")], ids=lambda e: e.name)
def test_the_progress_bar_moves_from_the_start_of_an_epoch_longer_than_the_checkpoints(
    engine: Engine, tiny_data: Path, tmp_path: Path
) -> None:
    # ckpt_path= from a run of shorter epochs (a larger batch size, limit_train_batches): the bar took the
    # checkpoint's count of 6 batches for a mid-epoch resume's and stayed at 0 for the new epoch's first 6.
    def fit(ckpt_path: Path | None, bar: pl.Callback, limit: int | float) -> pl.Trainer:
        dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=0, batch_size=4, engine=engine)
        trainer = pl.Trainer(
            max_epochs=2 if ckpt_path else 1, limit_train_batches=limit, callbacks=[bar], logger=False,
            enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm, ckpt_path=ckpt_path)
        return trainer

    fit(None, BatchProgressBar(), 6).save_checkpoint(tmp_path / "short.ckpt")  # one epoch of 6 batches
    bar = RecordingBar()
    fit(tmp_path / "short.ckpt", bar, 1.0)  # epochs of 15 batches
    assert bar.descriptions == [("Epoch 1", 15, n) for n in (3, 6, 9, 12, 15)]


def test_intervals_that_share_no_chunk_above_one_batch_take_lightnings_loop() -> None:
    # Logging every 7 and saving every 20 batches: chunks of one batch, no faster than Lightning's own loop (it said
    # "chunked (1 batches per Lightning step)"). engine=chunked still takes them when asked.
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = pl.Trainer(**quiet, log_every_n_steps=7, callbacks=[LastCheckpoint("unused", every_n_steps=20)])
    engine = choose_engine(trainer)
    assert engine.chunk is None
    assert engine.reason == "the run acts every 7, 20 batches, which share no chunk above 1 batch"
    assert choose_engine(trainer, "chunked").chunk == 1
    assert choose_engine(pl.Trainer(**quiet, log_every_n_steps=14)).chunk == 14  # a common chunk: still chunked


def test_lightning_moves_a_chunk_in_one_call_and_only_what_is_not_on_the_device() -> None:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from mnistlab.engine.chunks import Chunk

    chunk = Chunk((torch.rand(4, 1, 28, 28), torch.arange(4)) for _ in range(3))
    assert move_data_to_device(chunk, torch.device("cpu")) is chunk  # already there: nothing to walk or copy
    moved = move_data_to_device(chunk, torch.device("meta"))
    assert type(moved) is Chunk and len(moved) == 3
    assert all(x.device.type == "meta" and y.device.type == "meta" for x, y in moved)
    assert all(x.device.type == "cpu" for x, _ in chunk)  # the loader's batches are left as they were
