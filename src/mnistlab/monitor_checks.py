"""What ``EarlyStopping`` and ``ModelCheckpoint`` monitor, checked against what the run logs, before any work.

Lightning finds a monitor it cannot honour only at the first validation's end, after an epoch of training,
or never (a metric logged less often than it is read).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from mnistlab.config_keys import override_key
from mnistlab.errors import ConfigError
from mnistlab.lightning_private import checkpoint_every_n_train_steps, early_stopping_on_train_epoch_end
from mnistlab.spelling import nearest
from mnistlab.systems.metrics import FIT_METRICS, lower_is_better

STEP_LOSS = "train/loss_step"


def check_monitors(callbacks: dict[str, pl.Callback], log_every_n_steps: int) -> None:
    """Refuses an ``EarlyStopping`` or ``ModelCheckpoint`` monitoring a ``train/`` or ``val/`` metric never logged,
    or ``train/loss_step`` where it holds an older batch's loss (``check_step_loss_monitor``).

    Lightning finds out only at the first validation's end, after an epoch of training: ``EarlyStopping``
    with a traceback, ``ModelCheckpoint`` with its error. Those two namespaces are the system's
    (``FIT_METRICS``); other names, which a callback of one's own may log, are left to Lightning, as is
    ``EarlyStopping(strict=False)``, which documents that a missing metric is no error.
    """
    for name, cb in callbacks.items():
        strict = isinstance(cb, ModelCheckpoint) or (isinstance(cb, EarlyStopping) and cb.strict)
        monitor = getattr(cb, "monitor", None)
        if not strict or not isinstance(monitor, str) or monitor.split("/")[0] not in ("train", "val"):
            continue
        check_logged(f"{name}.monitor={monitor!r}", monitor)
        check_direction(name, cb, monitor)
        if monitor == STEP_LOSS:
            check_step_loss_monitor(name, cb, log_every_n_steps)


def check_logged(where: str, monitor: str) -> None:
    """Refuses ``monitor`` (set at ``where``) when it names a ``train/`` or ``val/`` metric the system never logs."""
    if monitor.split("/")[0] in ("train", "val") and monitor not in FIT_METRICS:
        near = nearest(monitor, list(FIT_METRICS))
        hint = f"; did you mean {near}?" if near else ""
        raise ConfigError(f"{where} is not a metric the run logs{hint} (logged: {', '.join(FIT_METRICS)})")


def check_direction(name: str, callback: pl.Callback, monitor: str) -> None:
    """Refuses a ``mode`` that ranks a loss's highest or an accuracy's lowest value best.

    ``callbacks.model_checkpoint.monitor=val/loss`` alone kept the config's ``mode=max``: ``best.ckpt`` held the
    epoch of the highest validation loss, which the run then tested as its result, without a word.
    """
    mode, wanted = getattr(callback, "mode", None), "min" if lower_is_better(monitor) else "max"
    if mode in ("min", "max") and mode != wanted:
        extreme = "highest" if mode == "max" else "lowest"
        raise ConfigError(
            f"{name}.mode={mode} ranks the {extreme} {monitor} best, which is the worst: give {name}.mode={wanted}"
        )


def check_step_loss_monitor(name: str, callback: pl.Callback, log_every_n_steps: int) -> None:
    """Refuses a monitor of ``train/loss_step`` that would read an older batch's loss.

    The system logs ``train/loss_step`` only every ``log_every_n_steps`` optimizer steps, the steps loggers write
    (``Classifier._record_training``); Lightning's own habit, logging at every step, costs a quarter of a
    per-step batch. A ``ModelCheckpoint`` that checks every N steps, N a multiple of that interval, reads the
    loss of its own step; any other check (an epoch's end, a time interval, another N) would read the loss
    of the last logging step as if it were the current one.
    """
    every = checkpoint_every_n_train_steps(callback) if isinstance(callback, ModelCheckpoint) else 0
    if log_every_n_steps > 0 and every > 0 and every % log_every_n_steps == 0:
        return
    where = f"every {every} steps" if every else "at an epoch's end"
    raise ConfigError(
        f"{name}.monitor='{STEP_LOSS}' is logged every trainer.log_every_n_steps={log_every_n_steps} steps, so "
        f"{where} it would hold an older step's loss: monitor train/loss (the epoch's mean), or check every "
        f"multiple of {log_every_n_steps} steps (ModelCheckpoint's every_n_train_steps)"
    )


def check_validation_monitors(trainer: pl.Trainer, has_validation: bool) -> None:
    """Refuses an ``EarlyStopping`` on a ``val/`` metric, or a ``val/`` time target, that the run's validation schedule
    never gives it."""
    if not has_validation:
        check_no_validation_monitor(trainer.callbacks, "this run holds out no validation set (data.val_size=0)")
    elif trainer.limit_val_batches == 0:
        check_no_validation_monitor(trainer.callbacks, "trainer.limit_val_batches=0 runs no validation")
    elif (every := trainer.check_val_every_n_epoch or 1) > 1:  # None: validation by val_check_interval alone
        check_every_epoch_monitor(trainer.callbacks, every)
        # Lightning validates after epochs every, 2 * every, ...: none at all in fewer epochs.
        if isinstance(epochs := trainer.max_epochs, int) and 0 < epochs < every:
            why = f"trainer.check_val_every_n_epoch={every} validates first after epoch {every}"
            check_no_validation_monitor(trainer.callbacks, f"{why}, past trainer.max_epochs={epochs}")


def check_no_validation_monitor(callbacks: Sequence[pl.Callback], why: str) -> None:
    """Refuses an ``EarlyStopping`` on a ``val/`` metric, or a time target, in a run without validation (``why``).

    Lightning would train an epoch and then raise with a traceback. A ``ModelCheckpoint`` ranked by one
    is no error: ``fit_and_test`` turns it off and tests the final weights. ``TimeToTarget`` reads a
    ``val/`` monitor only at validations: it trained the whole run and then said the target was not reached.
    """
    from mnistlab.callbacks.time_to_target import TimeToTarget  # it imports this module

    for cb in callbacks:
        if isinstance(cb, TimeToTarget) and cb.target is not None and not cb.monitor.startswith("train/"):
            raise ConfigError(
                f"callbacks.time_to_target.target={cb.target} is looked for at validations only, and {why}: "
                "it could never be reached; validate, or leave the target out"
            )
        if isinstance(cb, EarlyStopping) and cb.strict and str(cb.monitor).startswith("val/"):
            raise ConfigError(
                f"EarlyStopping(monitor={cb.monitor!r}) would never see its metric: {why}; "
                "monitor train/loss or train/acc, or validate"
            )


def check_every_epoch_monitor(callbacks: Sequence[pl.Callback], every: int) -> None:
    """Refuses an ``EarlyStopping(check_on_train_epoch_end=True)`` on a ``val/`` metric when validation runs
    only every ``every`` epochs: at the first epoch's end Lightning raises, with a traceback."""
    for cb in callbacks:
        validated = isinstance(cb, EarlyStopping) and cb.strict and str(cb.monitor).startswith("val/")
        if validated and early_stopping_on_train_epoch_end(cb):
            raise ConfigError(
                f"EarlyStopping(monitor={cb.monitor!r}, check_on_train_epoch_end=True) checks after every "
                f"training epoch, but trainer.check_val_every_n_epoch={every} validates only every {every} epochs: "
                "leave check_on_train_epoch_end unset (it then checks after each validation)"
            )


def check_given_checkpoint_monitor(overrides: Sequence[str], has_validation: bool) -> None:
    """Refuses a ``val/`` monitor given to ``callbacks.model_checkpoint`` on the command line of a run without
    validation. The default one is turned off there without a word (the notebook's recipe tests its final
    weights, ``fit_and_test``); a given one was dropped as silently: no ``best.ckpt``, no ``<monitor>_best``."""
    key = "callbacks.model_checkpoint.monitor"
    given = [o.split("=", 1)[1] for o in overrides if "=" in o and not o.startswith("~") and override_key(o) == key]
    if not has_validation and given and given[-1].startswith("val/"):
        raise ConfigError(
            f"{key}={given[-1]} keeps the best checkpoint by a validation metric, but this run holds out no "
            "validation set (data.val_size=0): leave it out (checkpoints/last.ckpt holds the final weights, which "
            "the test takes), or give data.val_size=N"
        )
