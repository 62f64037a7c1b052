"""Lightning's TQDM progress bar, counting batches when a Lightning step is a chunk of them (``engine.chunks``)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

from mnistlab.lightning_private import batches_done, restarted_mid_epoch


class BatchProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose training count is the batches done, not the Lightning steps.

    Under the per-step engine the two are the same and this bar behaves exactly as
    Lightning's. Under the chunked engine a step ends several batches later, so the bar
    reads the batch count from the loop and refreshes whenever the count crosses a
    multiple of ``refresh_rate`` (the total is already in batches, see ``TrainBatches``).
    Unlike Lightning's, it clears its bars when the fit fails, so that the error line stands alone.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self._shown = 0

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # A fit that fails (a diverged loss, a refused network) ends with one error line: on a line of its own,
        # not after the bar's. Each bar is cleared as Lightning clears it at a stage's end.
        for name in ("train_progress_bar", "val_progress_bar", "test_progress_bar", "predict_progress_bar"):
            with suppress(TypeError):  # Lightning's getter raises it for a bar never opened
                getattr(self, name).close()

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        if not restarted_mid_epoch(trainer):
            return
        # Lightning calls on_train_epoch_start only as an epoch starts, not for the epoch a checkpoint resumes
        # mid-way: the bar would keep its opening state ("Training: 101/?") to the epoch's end. It starts as
        # that hook would have started it, at the batches already done (``initial``: tqdm's rate counts from there).
        # The bar is new (Lightning's on_train_start just opened it): set in place, it is drawn once.
        bar = self.train_progress_bar
        bar.total = convert_inf(self.total_train_batches)
        bar.initial = bar.n = self._shown = batches_done(trainer)
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        # An epoch starts at 0. The batch count, which Lightning resets after this hook, is the last epoch's,
        # or a checkpoint's of other epoch lengths (ckpt_path= with another batch size); an epoch resumed
        # mid-way does not come here (on_train_start).
        self._shown = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = batches_done(trainer)  # batches done this epoch
        bar = self.train_progress_bar
        if bar is None or not self.is_enabled:
            return
        if (n // self.refresh_rate > self._shown // self.refresh_rate or n == bar.total) and not bar.disable:
            self._shown = bar.n = n
            bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))
