"""Training without Lightning's per-step wrappers: same weights, same global_step, hooks still honoured."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from mnistlab.data import MNISTDataModule
from mnistlab.engine import Engine
from mnistlab.engine.step import plain_precision
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
