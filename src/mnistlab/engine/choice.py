"""The engine's choice: per-step or chunked, decided from the run's Trainer before any work.

``engine=auto`` takes the chunked engine only when every setting and callback of the run is
on a whitelist of those known to be exact under it; anything else, a user's callback
included, means per-step, said in one log line. ``engine=chunked`` with a setting it cannot
honour is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.profilers import PassThroughProfiler

from mnistlab.engine.chunks import ChunkedBatches, ChunkedSteps
from mnistlab.errors import MnistlabError
from mnistlab.lightning_private import (
    checkpoint_every_n_train_steps,
    checkpoint_save_on_train_epoch_end,
    checkpoint_train_time_interval,
    detect_anomaly,
    val_check_time_interval,
)

log = logging.getLogger(__package__)  # mnistlab.engine

ENGINES = ("auto", "chunked", "per_step")
MAX_CHUNK = 50  # longer chunks gain nothing measurable and cost memory for the gathered images
# Callbacks whose per-batch hooks matter only at chunk ends (or that have none); exact types,
# since a subclass may override any hook.
CHUNK_SAFE_CALLBACKS: tuple[str, ...] = (
    "lightning.pytorch.callbacks.early_stopping.EarlyStopping",
    "lightning.pytorch.callbacks.model_summary.ModelSummary",
    "lightning.pytorch.callbacks.rich_model_summary.RichModelSummary",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    "mnistlab.engine.progress.BatchProgressBar",
    "mnistlab.callbacks.checkpoints.LastCheckpoint",
    "mnistlab.callbacks.job_progress.JobProgress",
    "mnistlab.callbacks.time_to_target.TimeToTarget",
    "mnistlab.systems.divergence.DivergenceCheck",
    "mnistlab.evaluation.callbacks.SampleImages",
    "mnistlab.evaluation.callbacks.TestReport",
)

# What Lightning calls for every training batch, and under chunks once a chunk: a system or data module
# subclass that overrides one of them over the class it extends needs Lightning's loop at every batch.
BATCH_HOOKS = (
    "training_step",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "configure_gradient_clipping",
    "optimizer_step",
    "on_before_zero_grad",
    "optimizer_zero_grad",
    "lr_scheduler_step",
    "on_before_batch_transfer",
    "transfer_batch_to_device",
    "on_after_batch_transfer",
)


@dataclass(frozen=True)
class Engine:
    """The decision: ``chunk`` batches per Lightning step (None: per-step) and why.

    The data module and the system are built with it: ``batches`` groups the training
    loader's batches into chunks, ``fast_path`` is the system's training step for them.
    """

    chunk: int | None
    reason: str

    @property
    def name(self) -> str:
        return "per_step" if self.chunk is None else "chunked"

    def batches(self, loader: Iterable, trainer: pl.Trainer | None = None) -> Iterable:
        """What the training loop iterates: ``loader`` itself per-step, else its batches in chunks aligned with
        ``trainer``'s counts."""
        return loader if self.chunk is None else ChunkedBatches(loader, self.chunk, trainer)

    def fast_path(self, cuda_graph: bool = True) -> ChunkedSteps | None:
        """The system's training step for chunks (None per-step: Lightning's automatic optimization)."""
        return None if self.chunk is None else ChunkedSteps(cuda_graph)

    def announce(self) -> None:
        """Says which engine runs and why, in one log line: after the run is built, so that a setting refused
        while the data module or the system is built is not preceded by it."""
        size = f"{self.chunk} batch{'es' if self.chunk != 1 else ''}"
        label = "per-step" if self.chunk is None else f"chunked ({size} per Lightning step)"
        log.info("engine: %s: %s", label, self.reason)


def _qualname(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def whole_epoch(value: int | float) -> bool:
    """True for Lightning's float 1.0 (the whole epoch); the int 1 means one batch, though ``1 == 1.0``."""
    return isinstance(value, float) and value == 1.0


def per_step_needs(trainer: pl.Trainer) -> list[str]:
    """The settings and callbacks of ``trainer`` that the chunked engine cannot honour."""
    dev_run = bool(trainer.fast_dev_run)
    needs = [
        name
        for name, changed in (
            ("trainer.gradient_clip_val", trainer.gradient_clip_val not in (None, 0)),
            ("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches != 1),
            ("trainer.fast_dev_run", dev_run),
            ("trainer.overfit_batches", trainer.overfit_batches > 0),
            # Lightning sets limit_train_batches to overfit_batches, and limit_train_batches and max_steps to
            # fast_dev_run's count: named by what was given, not by what Lightning derived from it.
            (
                "trainer.limit_train_batches",
                not (whole_epoch(trainer.limit_train_batches) or trainer.overfit_batches or dev_run),
            ),
            # Time-based ("DD:HH:MM:SS"): Lightning validates after whichever batch the time runs out in, and then
            # sets no val_check_interval at all (read only when it counts batches).
            (
                "trainer.val_check_interval",
                val_check_time_interval(trainer) is not None or not whole_epoch(trainer.val_check_interval),
            ),
            ("trainer.max_steps", trainer.max_steps != -1 and not dev_run),
            # Negative: Lightning logs at every batch (``step % n == 0``), chunks only at their ends.
            ("trainer.log_every_n_steps (negative)", trainer.log_every_n_steps < 0),
            ("trainer.detect_anomaly", detect_anomaly(trainer)),
            ("trainer.profiler", not isinstance(trainer.profiler, PassThroughProfiler)),
            *min_limits_that_matter(trainer),
        )
        if changed
    ]
    for cb in trainer.callbacks:
        if isinstance(cb, Timer):  # what Lightning adds for trainer.max_time, or a user's
            needs.append("trainer.max_time (callback Timer)")
        elif _qualname(cb) not in CHUNK_SAFE_CALLBACKS:
            needs.append(f"callback {type(cb).__name__}")
        elif isinstance(cb, ModelCheckpoint) and checkpoint_train_time_interval(cb) is not None:
            needs.append("ModelCheckpoint(train_time_interval=...)")
        elif isinstance(cb, ModelCheckpoint) and step_save_waits_for_validation(trainer, cb):
            needs.append("ModelCheckpoint(every_n_train_steps=..., monitor=...)")
    return needs


def step_save_waits_for_validation(trainer: pl.Trainer, callback: ModelCheckpoint) -> bool:
    """Whether Lightning may put ``callback``'s step save at an epoch's last batch off to the validation after it.

    It then ranks (and names) that checkpoint by the new validation's ``monitor``, not the last one's, but only under
    automatic optimization: for a manually optimized module (the chunked engine's) it saves at once, with the old
    value. It defers where it does not save at the training epoch's end: ``save_on_train_epoch_end=False``, or
    unset with ``check_val_every_n_epoch`` other than 1 (chunks validate only at epoch ends).
    """
    if not checkpoint_every_n_train_steps(callback) or callback.monitor is None:
        return False
    on_epoch_end = checkpoint_save_on_train_epoch_end(callback)
    return on_epoch_end is False or (on_epoch_end is None and trainer.check_val_every_n_epoch != 1)


def min_limits_that_matter(trainer: pl.Trainer) -> list[tuple[str, bool]]:
    """``trainer.min_steps`` and ``min_epochs`` as ``(name, matters)``: they matter where an early stop can come first.

    Lightning keeps ``should_stop`` set until the minimum is met, then stops at the first batch that
    meets it and logs every batch until then: chunks would overshoot ``min_steps`` to their end and
    log only at chunk ends. Among the chunk-safe callbacks only ``EarlyStopping`` sets ``should_stop``,
    at an epoch's end (chunks need ``val_check_interval=1.0``), so ``min_epochs=1`` is met by then.
    """
    if not any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks):
        return []
    return [
        ("trainer.min_steps (with EarlyStopping)", (trainer.min_steps or 0) > 0),
        ("trainer.min_epochs (with EarlyStopping)", (trainer.min_epochs or 0) > 1),
    ]


def step_intervals(trainer: pl.Trainer) -> list[int]:
    """Every batch interval at which the run acts (logging, step-based checkpoints)."""
    # Without a logger too: the progress bar's loss and the divergence check come at the logging steps.
    intervals = [trainer.log_every_n_steps] if trainer.log_every_n_steps > 0 else []
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and checkpoint_every_n_train_steps(cb):
            intervals.append(checkpoint_every_n_train_steps(cb))
        every = getattr(cb, "every_n_steps", None)  # LastCheckpoint
        if isinstance(every, int) and every > 0:
            intervals.append(every)
    return intervals


def chunk_size(intervals: list[int], limit: int = MAX_CHUNK) -> int:
    """The largest chunk up to ``limit`` that divides every interval."""
    g = math.gcd(*intervals) if intervals else limit
    return max(d for d in range(1, min(g, limit) + 1) if g % d == 0)


def overridden_batch_hooks(cls: type, base: type) -> list[str]:
    """The ``BATCH_HOOKS`` that ``cls`` defines over ``base``, as ``Class.hook``."""
    return [
        f"{cls.__name__}.{hook}" for hook in BATCH_HOOKS if getattr(cls, hook, None) is not getattr(base, hook, None)
    ]


def choose_engine(trainer: pl.Trainer, engine: str = "auto", subclasses: Iterable[tuple[type, type]] = ()) -> Engine:
    """Decides the engine for ``trainer``; ``Engine.announce`` says which, once the run is built.

    Args:
        trainer: The run's Trainer, with its callbacks.
        engine: ``auto``, ``chunked`` or ``per_step``.
        subclasses: (class, the mnistlab class it extends) of the system and the data module to be built:
            a per-batch hook of their own needs per-step.

    Raises:
        MnistlabError: For an unknown ``engine``, or ``chunked`` with a setting it cannot honour.
    """
    return _decide(trainer, engine, [hook for cls, base in subclasses for hook in overridden_batch_hooks(cls, base)])


def _decide(trainer: pl.Trainer, engine: str, own_hooks: list[str]) -> Engine:
    if engine not in ENGINES:
        raise MnistlabError(f"engine={engine!r} is unknown; choose one of {', '.join(ENGINES)}")
    if engine == "per_step":
        return Engine(None, "engine=per_step")
    needs = per_step_needs(trainer) + own_hooks
    if needs and engine == "chunked":
        raise MnistlabError(
            f"engine=chunked cannot honour {', '.join(needs)}: those need Lightning's loop at every batch; "
            "use engine=auto (or per_step)"
        )
    if needs:
        return Engine(None, f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} Lightning's loop at every batch")
    intervals = step_intervals(trainer)
    chunk = chunk_size(intervals)
    if chunk == 1 and engine == "auto":  # chunks of one batch would be per-step with extra steps: Lightning's own
        every = ", ".join(str(i) for i in sorted(set(intervals)))
        return Engine(None, f"the run acts every {every} batches, which share no chunk above 1 batch")
    size = f"{chunk} batch{'es' if chunk != 1 else ''}"
    return Engine(chunk, f"every setting and callback of this run is exact with chunks of {size}")
