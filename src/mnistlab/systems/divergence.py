"""The divergence check: training stops at the first non-finite loss, before any checkpoint of that step.

The loss is read to the host only where Lightning reads it anyway (a logging step, or an
epoch's end), so the check adds no host synchronisation to the training step. A checkpoint due
between two such steps checks the weights themselves (``check_finite_weights``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from mnistlab.errors import NonFiniteLossError


def check_finite(name: str, value: torch.Tensor, step: int, epoch: int) -> None:
    """Raises ``NonFiniteLossError`` if ``value`` (a scalar) is NaN or infinite."""
    if not torch.isfinite(value):
        raise NonFiniteLossError(
            f"{name} is {value.item()} at step {step} (epoch {epoch}): "
            "training diverged; lower optimizer.lr or check the data"
        )


def check_finite_weights(net: torch.nn.Module, step: int, epoch: int) -> None:
    """Raises ``NonFiniteLossError`` if a parameter of ``net`` holds NaN or infinity (one host sync)."""
    finite = torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all()
    if not finite:
        raise NonFiniteLossError(
            f"the weights are not finite at step {step} (epoch {epoch}), so they are not saved: "
            "training diverged; lower optimizer.lr or check the data"
        )


class DivergenceCheck(pl.Callback):
    """Checks the loss the system logged at this step (``Classifier.take_logged_loss``).

    The system hands it to the Trainer through ``configure_callbacks``. Lightning runs
    checkpoint callbacks (``ModelCheckpoint``, ``LastCheckpoint``) after every other
    callback, so a step whose loss is not finite raises before a checkpoint of it is
    written, and ``last.ckpt`` keeps the last finite weights to resume from.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = pl_module.take_logged_loss()
        if loss is not None:
            check_finite("train/loss_step", loss, trainer.global_step, trainer.current_epoch)
