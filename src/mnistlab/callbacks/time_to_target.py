"""Time to a target accuracy: the step and the wall time at which validation first reached it."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl

from mnistlab.config_checks import check_number
from mnistlab.errors import ConfigError
from mnistlab.monitor_checks import check_logged
from mnistlab.spelling import nearest
from mnistlab.systems.metrics import FIT_METRICS, lower_is_better

log = logging.getLogger(__name__)


def _check_monitor(monitor: str) -> None:
    where = f"callbacks.time_to_target.monitor={monitor}"
    if lower_is_better(monitor):  # train/loss_step too: its first value "reached" 0.9 at once
        raise ConfigError(f"{where}: a target is reached by rising to it, and a loss falls; watch val/acc or train/acc")
    if monitor.startswith("test/"):
        raise ConfigError(f"{where}: the test logs it after training, when no target can be timed; watch val/acc")
    check_logged(where, monitor)
    if monitor not in FIT_METRICS:  # val_acc (Keras'): the run trained to its end, then said "no validation ran"
        near = nearest(monitor, [m for m in FIT_METRICS if not lower_is_better(m)])
        hint = f"; did you mean {near}?" if near else ""
        raise ConfigError(f"{where} is not a metric the run logs{hint} (watch val/acc or train/acc)")


class TimeToTarget(pl.Callback):
    """Records when ``monitor`` (``val/acc``) first reaches ``target``, riding on Lightning's own validation.

    After every validation (``on_validation_end``, sanity checks excluded) it reads ``monitor``
    from ``trainer.callback_metrics``, which the system has already logged: no extra forward
    pass and no per-batch hook, so it costs nothing measurable and keeps the run on the fast
    engine. The first time the value is ``>= target`` it logs one line, sends
    ``time_to_target/step`` (optimizer steps, ``trainer.global_step``) and
    ``time_to_target/seconds`` (wall time spent training, validation included) to the loggers,
    and keeps them for ``metrics.json`` (``summary``). A run that never gets there says so in
    one line at its end and writes no step.

    Each new best of ``monitor`` is kept with its step and time, in the checkpoints too, so a run
    continued with ``resume=RUN_DIR`` counts its steps and its training seconds from the start, and
    a ``target`` first given at the restart is found where it was first reached, before it.

    The resolution is the validation interval: once per epoch by default. Lightning's
    ``trainer.val_check_interval=N`` validates every N batches and so catches the target
    within an epoch (such a run takes the per-step engine, see ``mnistlab.engine``).

    A ``train/`` monitor (``train/acc``) is the epoch's value, which the system logs in its own
    ``on_train_epoch_end``, after this callback's and after the epoch's validation: it is stamped with
    the step and time of the epoch's end here and read at the next hook (the next epoch's start, the
    end of training, or a checkpoint saved at that epoch end), once per epoch, validation or not.

    Args:
        target: The value to reach, e.g. 0.99; None turns the callback off.
        monitor: The logged metric to watch; higher is better.

    Raises:
        ConfigError: With a target, a ``monitor`` where lower is better (a loss would "reach" 0.99 at once),
            a ``test/`` metric (logged after training) or any other name the system does not log (``val_acc``:
            it would never reach it, silently). A run without validation is refused by ``mnistlab.monitor_checks``.
    """

    def __init__(self, target: float | None = None, monitor: str = "val/acc") -> None:
        if target is not None:
            check_number("callbacks.time_to_target.target", target, low=0, high=1)
            _check_monitor(monitor)
        self.target, self.monitor = target, monitor
        self.bests: list[tuple[int, int, float, float]] = []  # (step, epoch, seconds, value) at each new best
        self._earlier_seconds = 0.0  # training time before a restart (from the checkpoint)
        self._announced: float | None = None  # the target whose time was logged, here or before a restart
        self._start: float | None = None
        self._epoch_end: tuple[int, int, float] | None = None  # (step, epoch, seconds) of a train/ value to read

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a new fit; a checkpoint's state (load_state_dict) comes after this
            self.bests, self._earlier_seconds, self._announced = [], 0.0, None

    def state_dict(self) -> dict[str, Any]:
        return {"bests": [list(b) for b in self.bests], "seconds": self._seconds(), "announced": self._announced}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.bests = [(int(s), int(e), float(t), float(v)) for s, e, t, v in state_dict.get("bests", [])]
        self._earlier_seconds, self._announced = state_dict.get("seconds", 0.0), state_dict.get("announced")

    @property
    def earlier_seconds(self) -> float:
        """Training time of a resumed run's earlier launches, up to the checkpoint it took up (0 for a new run)."""
        return self._earlier_seconds

    def _seconds(self) -> float:
        return self._earlier_seconds + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def reached(self) -> tuple[int, int, float, float] | None:
        """(step, epoch, seconds, value) of the first validation at or above ``target``; None if none or off."""
        if self.target is None:
            return None
        return next((best for best in self.bests if best[3] >= self.target), None)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._announce(trainer)  # a target given at a restart may have been reached before it

    def _per_epoch(self) -> bool:
        """Whether ``monitor`` is a training epoch's value (read at the epoch's end), not a validation's."""
        return self.monitor.startswith("train/")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._start is None or self._per_epoch():
            return  # at a validation, a train/ metric is still the previous epoch's
        self._record(trainer, (trainer.global_step, trainer.current_epoch, self._seconds()))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._per_epoch() and self._start is not None:
            self._epoch_end = (trainer.global_step, trainer.current_epoch, self._seconds())  # the value comes next

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._read_epoch_end(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Lightning took state_dict() before this hook: a checkpoint of the epoch's end gets its value too.
        if self._read_epoch_end(trainer) and self.state_key in checkpoint.get("callbacks", {}):
            checkpoint["callbacks"][self.state_key] = self.state_dict()

    def _read_epoch_end(self, trainer: pl.Trainer) -> bool:
        """Records the training epoch's value stamped at its end, once logged; whether there was one to read."""
        if self._epoch_end is None or self.monitor not in trainer.callback_metrics:
            return False
        stamp, self._epoch_end = self._epoch_end, None
        self._record(trainer, stamp)
        return True

    def _record(self, trainer: pl.Trainer, stamp: tuple[int, int, float]) -> None:
        """Keeps ``monitor``'s value, already computed by the system, with ``stamp`` if it is a new best."""
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if not self.bests or value > self.bests[-1][3]:
            self.bests.append((*stamp, value))
            self._announce(trainer)

    def _announce(self, trainer: pl.Trainer) -> None:
        if (reached := self.reached()) is None or self._announced == self.target:
            return
        step, epoch, seconds, value = reached
        log.info(
            "time to target: %s %.4f >= %s at step %d (epoch %d), %.2f s after training started", self.monitor, value,
            self.target, step, epoch, seconds,
        )  # fmt: skip
        for logger in trainer.loggers:
            logger.log_metrics({"time_to_target/step": float(step), "time_to_target/seconds": seconds}, step=step)
        self._announced = self.target

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._read_epoch_end(trainer)
        if self.target is not None and self.reached() is None:
            best = f"best {self.bests[-1][3]:.4f}" if self.bests else "no validation ran"
            log.info(
                "time to target: %s did not reach %s in %d steps (%s)", self.monitor, self.target,
                trainer.global_step, best,
            )  # fmt: skip

    def summary(self) -> dict[str, float]:
        """``time_to_target/target``, and ``/step`` and ``/seconds`` when it was reached; {} when off."""
        if self.target is None:
            return {}
        if (reached := self.reached()) is None:
            return {"time_to_target/target": self.target}
        step, _, seconds, _ = reached
        return {"time_to_target/target": self.target, "time_to_target/step": step, "time_to_target/seconds": seconds}
