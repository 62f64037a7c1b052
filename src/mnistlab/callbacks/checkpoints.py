"""Callbacks that keep a run resumable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnistlab import interrupts
from mnistlab.config_checks import check_number
from mnistlab.lightning_private import give_back_sigterm, hold_back_sigterm

log = logging.getLogger(__name__)
GRADIENTS_KEY = "accumulated_gradients"  # a checkpoint's gradients of an optimizer step not yet taken


class LastCheckpoint(Checkpoint):
    """Overwrites ``dirpath/last.ckpt`` at every epoch end, every ``every_n_steps`` optimizer steps, and at a SIGTERM
    or a Ctrl-C (at the end of the step it came in, ``mnistlab.interrupts``; in a fit's validation, or a step that one
    follows, once that validation ends).

    A save between the optimizer steps of ``trainer.accumulate_grad_batches`` holds the gradients summed so far
    (``GRADIENTS_KEY``), which a resume puts back: the run continues exactly where it stopped.

    Not ``ModelCheckpoint(save_last=True)``: since Lightning 2.6 that writes ``last.ckpt``
    only when a top-k checkpoint is saved too, i.e. when ``val/acc`` improves, so a resume
    could lose epochs. Mid-epoch saves happen when ``trainer.global_step`` is a multiple of
    ``every_n_steps``, as ``ModelCheckpoint(every_n_train_steps=...)`` counts (``mnistlab.engine``
    keeps its steps in step with it). Writes are atomic (``SafeCheckpointIO``).

    A Lightning ``Checkpoint``, so Lightning runs it after the other callbacks and, at an
    epoch's end, after the system's own ``on_train_epoch_end``: a step or an epoch whose loss
    is not finite stops the run before it is saved (``mnistlab.systems.divergence``).

    Under ``trainer.fast_dev_run`` it saves nothing, as Lightning's checkpoint callbacks do.

    Args:
        dirpath: Folder of ``last.ckpt``.
        every_n_steps: Optimizer steps between mid-epoch saves; None saves only at epoch ends.
    """

    def __init__(self, dirpath: str, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None:
            check_number("callbacks.last_checkpoint.every_n_steps", every_n_steps, integer=True, low=1)
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self._saved_at = -1  # global_step of the last save: one file per step, however many hooks see it
        self._batches_done = 0  # batches of this epoch through on_train_batch_end: where an accumulation stands
        self._gradients: dict[str, Any] = {}  # a resumed checkpoint's GRADIENTS_KEY, put back as training starts
        self._stop_pending = False  # a Ctrl-C's step is saved: stop at the next hook, once Lightning logged it
        self._save_after_validation = False  # a validation follows a step save: saved again as it ends
        self._hold_sigterm = False  # this validation is a fit's, in one process: a SIGTERM waits for its end
        self._sigterm_held = False  # a SIGTERM came during this validation: given back to Lightning as it ends

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches_done = batch_idx + 1
        if self._batches_done >= trainer.num_training_batches:
            # The epoch's last step is saved at the epoch's end, after its validation: Lightning resumes a save from
            # here as a finished epoch, so the resumed run skipped that validation and the epoch's train/loss and
            # train/acc (which it then averaged into the next epoch's). A Ctrl-C now stops after the epoch's end.
            return
        step = trainer.global_step
        due = self.every_n_steps is not None and step % self.every_n_steps == 0
        if (due or interrupts.stop_requested()) and step != self._saved_at:
            self._save(trainer)
        # A Ctrl-C that came during this step (mnistlab.interrupts): the step is whole and saved. Lightning logs
        # its metrics only after on_train_batch_end, so the stop waits for the next hook (a stop here lost the
        # step's train/loss_step point, which the resumed run, starting after it, never logged).
        self._stop_pending = interrupts.stop_requested() and self._saved_at == step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._stop_pending:
            self._stop()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A validation right after a step saved (every_n_steps, a Ctrl-C) within the epoch (val_check_interval):
        # Lightning resumes that save past this validation, whose points the resumed run never logged. Saved again
        # once it ends, the resume starts after it; a Ctrl-C's stop waits for that save (on_train_batch_start).
        self._save_after_validation = not trainer.sanity_checking and self._saved_at == trainer.global_step
        interrupts.set_validating(not trainer.sanity_checking)  # a Ctrl-C's line says where the run stops
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run
        self._hold_sigterm = fitting and trainer.world_size == 1  # under DDP the ranks must stop at one batch

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # A SIGTERM (a cluster's time limit, `kill`) in a fit's validation, or in the step before it: Lightning stopped
        # at the next validation batch, where nothing saved the training state, and the resumed run trained again from
        # the last save (up to an epoch). Held back, the validation ends and is logged, and is saved (below).
        if self._hold_sigterm and hold_back_sigterm(trainer):
            if not self._sigterm_held:
                log.warning("SIGTERM: stopping once this validation ends, with %s saved", self.path.name)
            self._sigterm_held = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        interrupts.set_validating(False)
        sigterm = self._hold_sigterm and (self._sigterm_held or trainer.received_sigterm)
        self._hold_sigterm = False
        # Saved here, not in on_exception: Lightning resumes a save made as a validation ends past that validation
        # (as ModelCheckpoint's), but one made after the step's end counted the step twice in the loggers' x-axis.
        if self._save_after_validation or (sigterm and trainer.global_step != self._saved_at):
            self._save(trainer)
        self._save_after_validation = False
        if self._sigterm_held:  # Lightning stops at its next check, as it does at a SIGTERM
            self._sigterm_held = False
            give_back_sigterm(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches_done = 0
        if self._stop_pending:  # a Ctrl-C in the last epoch's end (its last step, its validation): saved, logged
            self._stop()

    def _stop(self) -> None:
        self._stop_pending = False
        interrupts.close_window()
        raise KeyboardInterrupt

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        interrupts.close_window()
        # Lightning stops a fit that received SIGTERM (a cluster's time limit, `kill`) after a whole training
        # step, its state complete: saved, the run continues from that step rather than the last save.
        # Between the optimizer steps of accumulate_grad_batches, the gradients summed so far go with it.
        if isinstance(exception, SIGTERMException) and trainer.training and trainer.global_step != self._saved_at:
            self._save(trainer)
            if trainer.world_size > 1 and (pending := self.unstepped_batches(trainer)):
                log.warning(
                    "SIGTERM after %d of the %d batches that trainer.accumulate_grad_batches sums for optimizer "
                    "step %d: last.ckpt saved, but each of the %d processes holds gradients of its own, which one "
                    "checkpoint does not keep, so the resumed run takes that step on the remaining batches alone",
                    pending,
                    trainer.accumulate_grad_batches,
                    trainer.global_step + 1,
                    trainer.world_size,
                )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning saves no gradients. A save between the optimizer steps of accumulate_grad_batches (a SIGTERM's,
        # or an every_n_steps save before the first step) keeps the ones summed so far, so that the resumed run
        # takes that step on all its batches and ends with an uninterrupted run's weights. Under DDP each process
        # sums its own until the step's all-reduce, and one file cannot hand each its own: on_exception warns.
        if self.unstepped_batches(trainer) and trainer.world_size == 1:
            checkpoint[GRADIENTS_KEY] = {
                name: p.grad.detach().clone() for name, p in pl_module.named_parameters() if p.grad is not None
            }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._gradients = checkpoint.get(GRADIENTS_KEY) or {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size == 1 and not trainer.fast_dev_run:  # a Ctrl-C waits for the step's end and its save
            interrupts.open_window()
        # Lightning zeroes the gradients as the fit starts, after restoring, and then only at the first batch of
        # an accumulation: the resumed batches add to these.
        for name, p in pl_module.named_parameters():
            if name in self._gradients:
                p.grad = self._gradients[name].to(device=p.device, dtype=p.dtype)
        self._gradients = {}

    def unstepped_batches(self, trainer: pl.Trainer) -> int:
        """Batches of this epoch whose gradients await an optimizer step (``accumulate_grad_batches`` > 1).

        Lightning steps after every ``accumulate_grad_batches`` batches of an epoch and at its last batch.
        """
        if self._batches_done == trainer.num_training_batches:
            return 0
        return self._batches_done % trainer.accumulate_grad_batches

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after validation and after ModelCheckpoint (listed before it), so the best-checkpoint
        # state saved with it is current.
        self._save(trainer)
        # Lightning logs the epoch's train/loss and train/acc after this hook: a Ctrl-C stops at the next one (a stop
        # here lost those points, which the resumed run, starting with the next epoch, never logged).
        self._stop_pending = interrupts.stop_requested()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_pending:  # a Ctrl-C in the last epoch's end: saved and logged, the test is the resume's
            self._stop()
        interrupts.close_window()  # a Ctrl-C during the test stops at once

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run:  # a smoke test, as for Lightning's ModelCheckpoint: nothing to resume from
            return
        # Curves logged so far reach the disk before the checkpoint that a resume starts from;
        # TensorBoard's writer would otherwise hold them in memory for up to two minutes.
        for logger in trainer.loggers:
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resume needs optimizer and loops
        self._saved_at = trainer.global_step
