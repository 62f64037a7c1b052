"""Every use of Lightning's private state in mnistlab, in one module.

Lightning offers no public way to do what these functions do. Each reads or writes state
that a Lightning release may rename without notice, so nothing else in mnistlab touches it,
and ``tests/test_lightning_private.py`` checks every attribute below on a real Trainer and
fails with the attribute's name when a release renames it.

Attributes touched (``PRIVATE_ATTRIBUTES`` lists them for the test):

- ``Trainer._detect_anomaly``: read; ``Trainer(detect_anomaly=...)`` has no public getter.
- ``Trainer._val_check_time_interval``: read; a time-based ``val_check_interval`` ("DD:HH:MM:SS", a timedelta or a
  dict of its arguments) in seconds, None for one in batches. Lightning then leaves ``val_check_interval`` unset.
- ``Trainer._logger_connector.should_update_logs``: read; whether Lightning writes this step's logs.
- ``Trainer._signal_connector.received_sigterm``: read and written; the SIGTERM Lightning's handler recorded, which
  its loops stop at (``Trainer.received_sigterm`` has no setter), held back during a fit's validation.
- ``Trainer.fit_loop._load_combined_loader_states``: called; hands a restored loader its saved position.
- ``Trainer.fit_loop.restarted_mid_epoch``: read; a fit resumed mid-epoch, whose epoch start hooks Lightning skips.
- ``Trainer.fit_loop._data_fetcher`` (``fetched``, ``length``, ``done``): advanced by a step of several batches.
- ``Trainer.fit_loop.epoch_loop._batches_that_stepped``: advanced likewise (the logging interval, the loggers' x-axis),
  and read where an epoch of the engine's fast path starts, to end its steps at the logging steps, and for the
  step of the confusion-matrix images (``logging_step``); set before an evaluation's test, whose scalars it places.
- ``Trainer.fit_loop.epoch_loop.batch_progress``: its progress tracker, read and advanced likewise.
- ``Trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress`` and
  ``Trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step``: the optimizer-step
  trackers behind ``trainer.global_step``.
- ``ModelCheckpoint._every_n_train_steps``, ``ModelCheckpoint._train_time_interval`` and
  ``ModelCheckpoint._save_on_train_epoch_end`` (as given; None: Lightning decides at each save): read.
- ``EarlyStopping._check_on_train_epoch_end``: read; ``EarlyStopping(check_on_train_epoch_end=...)`` as given
  (None until Lightning decides it in ``setup``).
- ``SummaryWriter._get_file_writer``: torch's TensorBoard writer behind Lightning's ``TensorBoardLogger``;
  called to add raw summaries and events.
- ``MLFlowLogger._initialized``, ``_run_id``: read (has the logger its run yet?); ``_mlflow_client``,
  ``_experiment_name``, ``_artifact_location``: read, and ``_experiment_id``: written, to hand Lightning the
  experiment before it looks it up (its own lookup fails when a parallel job creates the same experiment first).
- A checkpoint's ``loops`` entry (``CHECKPOINT_EPOCHS_PROCESSED``): the fit loop's saved state, read for the
  epochs a checkpoint has trained through.
- The module ``lightning.pytorch.loops.fit_loop`` (``FIT_LOOP_MODULE``): where Lightning checks the Trainer's
  counts against the data once it is set up (``val_check_interval`` above an epoch's batches) and raises a
  plain ``ValueError``, which ``count_refused_by_lightning`` recognises for ``mnistlab.user_errors``.
- The module ``lightning.pytorch.callbacks.early_stopping`` (``EARLY_STOPPING_MODULE``): ``EarlyStopping``'s
  plain ``RuntimeError`` for a monitored metric that is not logged (``monitor_refused_by_lightning``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

# (owner, dotted attribute path) of each private attribute used below; the test resolves each one.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("Trainer", "_detect_anomaly"),
    ("Trainer", "_val_check_time_interval"),
    ("Trainer", "_logger_connector.should_update_logs"),
    ("Trainer", "_signal_connector.received_sigterm"),
    ("Trainer", "fit_loop._load_combined_loader_states"),
    ("Trainer", "fit_loop.restarted_mid_epoch"),
    ("Trainer", "fit_loop._data_fetcher.fetched"),
    ("Trainer", "fit_loop._data_fetcher.length"),
    ("Trainer", "fit_loop._data_fetcher.done"),
    ("Trainer", "fit_loop.epoch_loop._batches_that_stepped"),
    ("Trainer", "fit_loop.epoch_loop.batch_progress.current.processed"),
    ("Trainer", "fit_loop.epoch_loop.batch_progress.increment_by"),
    ("Trainer", "fit_loop.epoch_loop.manual_optimization.optim_step_progress.total.completed"),
    ("Trainer", "fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed"),
    ("ModelCheckpoint", "_every_n_train_steps"),
    ("ModelCheckpoint", "_train_time_interval"),
    ("ModelCheckpoint", "_save_on_train_epoch_end"),
    ("EarlyStopping", "_check_on_train_epoch_end"),
    ("SummaryWriter", "_get_file_writer"),
    ("MLFlowLogger", "_initialized"),
    ("MLFlowLogger", "_run_id"),
    ("MLFlowLogger", "_mlflow_client"),
    ("MLFlowLogger", "_experiment_name"),
    ("MLFlowLogger", "_artifact_location"),
    ("MLFlowLogger", "_experiment_id"),
)
# The module whose ValueErrors are Lightning's checks of the Trainer's counts against the data.
FIT_LOOP_MODULE = "lightning.pytorch.loops.fit_loop"
# EarlyStopping raises a plain RuntimeError for a monitored metric that is not logged (strict=True).
EARLY_STOPPING_MODULE = "lightning.pytorch.callbacks.early_stopping"
# The keys, in a checkpoint, of the fit loop's count of epochs whose training has run.
CHECKPOINT_EPOCHS_PROCESSED = ("loops", "fit_loop", "epoch_progress", "current", "processed")


def detect_anomaly(trainer: pl.Trainer) -> bool:
    return trainer._detect_anomaly


def val_check_time_interval(trainer: pl.Trainer) -> float | None:
    """Seconds between validations of a time-based ``val_check_interval``; None when it counts batches."""
    return trainer._val_check_time_interval


def should_update_logs(trainer: pl.Trainer) -> bool:
    """True at the steps whose logged values Lightning hands to the loggers (every ``log_every_n_steps``)."""
    return trainer._logger_connector.should_update_logs


def hold_back_sigterm(trainer: pl.Trainer) -> bool:
    """Clears a SIGTERM that Lightning's handler recorded, so that its loops go on; True where there was one."""
    received = trainer._signal_connector.received_sigterm
    trainer._signal_connector.received_sigterm = False
    return received


def give_back_sigterm(trainer: pl.Trainer) -> None:
    """Records a held-back SIGTERM again: Lightning's loops stop at their next check, as at the signal."""
    trainer._signal_connector.received_sigterm = True


def restore_loader_position(trainer: pl.Trainer) -> None:
    """Hands the training loader the position a resumed checkpoint saved (a no-op otherwise).

    Lightning restores it only when the loader is built after the checkpoint is loaded; reading
    ``trainer.estimated_stepping_batches`` in ``configure_optimizers`` builds it before.
    """
    trainer.fit_loop._load_combined_loader_states()


def restarted_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether this fit resumed a checkpoint saved mid-epoch: Lightning then skips ``on_train_epoch_start``."""
    return trainer.fit_loop.restarted_mid_epoch


def batches_done(trainer: pl.Trainer) -> int:
    """Training batches processed in the running epoch, as Lightning's loop counts them."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def step_counts(trainer: pl.Trainer) -> tuple[int, int]:
    """The batches that stepped (what ``log_every_n_steps`` counts) and ``trainer.global_step`` (what step
    checkpoints count) so far; equal unless a resumed checkpoint accumulated gradients."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped, trainer.global_step


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning hands the loggers for what is logged now (its ``log_metrics`` default).

    Not ``trainer.global_step``: an epoch's or a validation's metrics are logged at the step of the batch
    just trained, one below the optimizer steps counted after it.
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def start_logging_at(trainer: pl.Trainer, step: int) -> None:
    """Makes a trainer that has not fitted log what it logs now (a test's scalars) at ``step``.

    Lightning logs a test's metrics at the batches that stepped in this trainer's fit: 0 without one.
    An evaluation of a checkpoint trained for N steps belongs at step N, beside the training run's points.
    """
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def count_batches(trainer: pl.Trainer, extra: int) -> None:
    """Counts ``extra`` more batches for the Lightning step running now.

    Called from ``training_step``, before Lightning logs the step, checks validation and runs
    ``on_train_batch_end``; Lightning counts the step's own batch itself afterwards. Afterwards
    ``batch_idx``, ``global_step`` of the loggers, the logging interval, ``val_check_interval``
    and the progress bar see the same numbers as after the same batch of a one-batch-per-step run.
    """
    loop = trainer.fit_loop.epoch_loop
    fetcher = trainer.fit_loop._data_fetcher
    fetcher.fetched += extra
    done = fetcher.length is not None and fetcher.fetched >= fetcher.length
    fetcher.done = done
    loop.batch_progress.increment_by(extra, is_last_batch=done)
    loop._batches_that_stepped += extra


def count_optimizer_steps(trainer: pl.Trainer, steps: int) -> None:
    """Advances ``trainer.global_step`` of a manually optimized module by ``steps``.

    ``LightningOptimizer.step`` does this once per call; a step taken on the raw optimizer is counted here.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for _ in range(steps):
        progress.increment_ready()
        progress.increment_completed()


def align_optimizer_step_counts(trainer: pl.Trainer) -> None:
    """Sets the automatic- and manual-optimization step counters both to the larger one.

    ``trainer.global_step`` reads one or the other depending on ``automatic_optimization``, and a
    checkpoint holds only the one its run advanced: aligning them when training starts lets a run
    resume a checkpoint written under the other mode with its step count.
    """
    loop = trainer.fit_loop.epoch_loop
    counters = (loop.automatic_optimization.optim_progress.optimizer.step, loop.manual_optimization.optim_step_progress)
    steps = max(c.total.completed for c in counters)
    for c in counters:
        c.total.ready = c.total.completed = steps


def checkpoint_every_n_train_steps(callback: ModelCheckpoint) -> int:
    """``ModelCheckpoint(every_n_train_steps=...)``; 0 when unset."""
    return callback._every_n_train_steps or 0


def checkpoint_train_time_interval(callback: ModelCheckpoint) -> timedelta | None:
    """``ModelCheckpoint(train_time_interval=...)``."""
    return callback._train_time_interval


def checkpoint_save_on_train_epoch_end(callback: ModelCheckpoint) -> bool | None:
    """``ModelCheckpoint(save_on_train_epoch_end=...)`` as given; None: Lightning decides from the Trainer."""
    return callback._save_on_train_epoch_end


def early_stopping_on_train_epoch_end(callback: EarlyStopping) -> bool | None:
    """``EarlyStopping(check_on_train_epoch_end=...)`` as given; None: Lightning decides at setup."""
    return callback._check_on_train_epoch_end


def file_writer(writer: Any) -> Any:
    """The event-file writer of a ``torch.utils.tensorboard.SummaryWriter`` (``add_summary``, ``add_event``)."""
    return writer._get_file_writer()


def mlflow_run_started(logger: Any) -> bool:
    """Whether Lightning's ``MLFlowLogger`` has made or attached its run (``finalize`` before that has no run)."""
    return logger._initialized


def mlflow_experiment_needed(logger: Any) -> bool:
    """Whether Lightning's ``MLFlowLogger`` will look its experiment up: a new run, not yet started."""
    return not logger._initialized and logger._run_id is None


def mlflow_set_experiment(logger: Any, find: Callable[[Any, str, str | None], str]) -> None:
    """Hands Lightning's ``MLFlowLogger`` its experiment: ``find(client, experiment_name, artifact_location)``."""
    logger._experiment_id = find(logger._mlflow_client, logger._experiment_name, logger._artifact_location)


def checkpoint_epochs_processed(ckpt: dict[str, Any]) -> int | None:
    """The epochs whose training a checkpoint's saved fit loop has run; None when it holds no loop state."""
    node: Any = ckpt
    for key in CHECKPOINT_EPOCHS_PROCESSED:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return int(node)


def count_refused_by_lightning(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``ValueError`` raised in Lightning's fit loop module (a Trainer count the data refuses)."""
    return isinstance(exc, ValueError) and _raised_in(exc) == FIT_LOOP_MODULE


def monitor_refused_by_lightning(exc: BaseException) -> bool:
    """Whether ``exc`` is ``EarlyStopping``'s ``RuntimeError`` for a monitored metric the run does not log."""
    return isinstance(exc, RuntimeError) and _raised_in(exc) == EARLY_STOPPING_MODULE


def _raised_in(exc: BaseException) -> str | None:
    """The module whose code raised ``exc`` (its traceback's last frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else tb.tb_frame.f_globals.get("__name__")
