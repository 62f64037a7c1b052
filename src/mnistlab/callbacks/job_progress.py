"""A sweep job's progress on the sweep's console: a line now and then, while its output goes to its log."""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import lightning.pytorch as pl

from mnistlab.lightning_private import batches_done


class JobProgress(pl.Callback):
    """Prints ``  job 3: epoch 2/8, batch 300/430, 95 s; val/acc 0.9871`` to ``console`` every ``every`` seconds.

    A sweep sends each job's output, its progress bar included, into the job's ``train.log``, so that the
    console holds one line per job. A long job (a CNN fold: minutes an epoch) then showed nothing until it
    ended. This line comes at the first training batch end after ``every`` seconds (under the engine's fast
    path, the end of a step of several batches: the engine keeps it), with the last ``val/acc`` once there is one.
    Shorter jobs print none.

    Args:
        job: The job's number in the sweep (``hydra.job.num``).
        console: Where the sweep's own lines go.
        every: Seconds between two lines.
    """

    def __init__(self, job: int, console: TextIO, every: float = 30.0) -> None:
        self.job, self.console, self.every = job, console, every
        self._start = self._last = math.inf  # no line before the fit starts

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every or not trainer.is_global_zero:
            return
        self._last = now
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        batches = f"/{trainer.num_training_batches}" if math.isfinite(trainer.num_training_batches) else ""
        line = f"  job {self.job}: epoch {trainer.current_epoch + 1}{epochs}, batch {batches_done(trainer)}{batches}"
        line += f", {now - self._start:.0f} s"
        if (acc := trainer.callback_metrics.get("val/acc")) is not None:
            line += f"; val/acc {float(acc):.4f}"
        print(line, file=self.console, flush=True)
