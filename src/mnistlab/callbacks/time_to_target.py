"""Time to a target accuracy: the step and the wall time at which validation first reached it."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl

from mnistlab.config_checks import check_number

log = logging.getLogger(__name__)


class TimeToTarget(pl.Callback):
    """Records when ``monitor`` (``val/acc``) first reaches ``target``, riding on Lightning's own validation.

    After every validation (``on_validation_end``, sanity checks excluded) it reads ``monitor``
    from ``trainer.callback_metrics``, which the system has already logged: no extra forward
    pass and no per-batch hook, so it costs nothing measurable and keeps the run on the fast
    engine. The first time the value is ``>= target`` it logs one line, sends
    ``time_to_target/step`` (optimizer steps, ``trainer.global_step``) and
    ``time_to_target/seconds`` (wall time since training started, validation included) to
    the loggers, and keeps them for ``metrics.json`` (``summary``). A run that never gets
    there says so in one line at its end and writes no step.

    The clock starts when this process starts training: a run continued with ``resume=RUN_DIR``
    (which may set a new ``target``) counts its seconds from the restart, its steps from the start.

    The resolution is the validation interval: once per epoch by default. Lightning's
    ``trainer.val_check_interval=N`` validates every N batches and so catches the target
    within an epoch (such a run takes the per-step engine, see ``mnistlab.engine``).

    Args:
        target: The value to reach, e.g. 0.99; None turns the callback off.
        monitor: The logged metric to watch; higher is better.
    """

    def __init__(self, target: float | None = None, monitor: str = "val/acc") -> None:
        if target is not None:
            check_number("callbacks.time_to_target.target", target, low=0, high=1)
        self.target, self.monitor = target, monitor
        self.step: int | None = None
        self.seconds: float | None = None
        self.best: float | None = None
        self._start: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self.step = self.seconds = self.best = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.target is None or trainer.sanity_checking or self.step is not None or self._start is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)  # already computed by the system at this validation's end
        self.best = value if self.best is None else max(self.best, value)
        if value < self.target:
            return
        self.step, self.seconds = trainer.global_step, time.perf_counter() - self._start
        log.info(
            "time to target: %s %.4f >= %s at step %d (epoch %d), %.2f s after training started",
            self.monitor, value, self.target, self.step, trainer.current_epoch, self.seconds,
        )  # fmt: skip
        for logger in trainer.loggers:
            logger.log_metrics(
                {"time_to_target/step": float(self.step), "time_to_target/seconds": self.seconds}, step=self.step
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.target is not None and self.step is None:
            best = "no validation ran" if self.best is None else f"best {self.best:.4f}"
            log.info(
                "time to target: %s did not reach %s in %d steps (%s)", self.monitor, self.target,
                trainer.global_step, best,
            )  # fmt: skip

    def summary(self) -> dict[str, float]:
        """``time_to_target/target``, and ``/step`` and ``/seconds`` when it was reached; {} when off."""
        if self.target is None:
            return {}
        if self.step is None:
            return {"time_to_target/target": self.target}
        return {
            "time_to_target/target": self.target,
            "time_to_target/step": self.step,
            "time_to_target/seconds": self.seconds,
        }
