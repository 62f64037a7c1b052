"""The one place that finds a run's TensorBoard writers, and names their folder when they cannot write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter

from mnistlab.errors import WriteError, is_write_error


def tensorboard_writers(trainer: pl.Trainer) -> list[SummaryWriter]:
    """The SummaryWriters of the trainer's TensorBoard loggers; none on ranks other than zero."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


@contextmanager
def tensorboard_write_errors(trainer: pl.Trainer) -> Iterator[None]:
    """Turns a TensorBoard writer's failed write (a full disk, a read-only folder) into a ``WriteError``.

    A SummaryWriter writes its event file in a thread of its own, and hands the thread's error to the
    run at its next add or flush as a bare ``OSError`` without a file name (every other writer names
    its file): it is named after the writer's folder here.
    """
    try:
        yield
    except OSError as e:
        folders = [lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if e.filename or not is_write_error(e) or not folders:
            raise
        raise WriteError(f"the TensorBoard events in {Path(folders[0])}", e) from e
