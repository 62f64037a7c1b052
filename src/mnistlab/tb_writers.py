"""The one place that finds a run's TensorBoard writers."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter


def tensorboard_writers(trainer: pl.Trainer) -> list[SummaryWriter]:
    """The SummaryWriters of the trainer's TensorBoard loggers; none on ranks other than zero."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
