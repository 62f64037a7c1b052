"""Which training engine a run takes, decided from its Trainer before any work.

- **per_step**: Lightning's own loop, one Lightning step and one optimizer step per batch,
  automatic optimization. Every Trainer flag and callback means what Lightning documents.
- **chunked**: one Lightning step runs a chunk of consecutive batches (manual optimization,
  one optimizer step each), which makes a small network train about as fast as a
  hand-written loop. Chunk ends are aligned with every interval the run counts, and
  ``mnistlab.systems.chunked.count_batches`` keeps Lightning's counters in batches, so the
  run logs, validates, checkpoints and reports progress at the same batches as per-step.

``engine=auto`` takes the chunked engine only when every setting and callback of the run is
on a whitelist of those known to be exact under it; anything else, a user's callback
included, means per-step, said in one log line. ``engine=chunked`` with a setting it cannot
honour is refused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.profilers import PassThroughProfiler

from mnistlab.errors import MnistlabError

log = logging.getLogger(__name__)

ENGINES = ("auto", "chunked", "per_step")
MAX_CHUNK = 50  # longer chunks gain nothing measurable and cost memory for the gathered images
# Callbacks whose per-batch hooks matter only at chunk ends (or that have none); exact types,
# since a subclass may override any hook.
CHUNK_SAFE_CALLBACKS: tuple[str, ...] = (
    "lightning.pytorch.callbacks.early_stopping.EarlyStopping",
    "lightning.pytorch.callbacks.model_summary.ModelSummary",
    "lightning.pytorch.callbacks.rich_model_summary.RichModelSummary",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    "mnistlab.callbacks.progress.BatchProgressBar",
    "mnistlab.callbacks.checkpoints.LastCheckpoint",
    "mnistlab.systems.divergence.DivergenceCheck",
    "mnistlab.evaluation.callbacks.SampleImages",
    "mnistlab.evaluation.callbacks.TestReport",
)


@dataclass(frozen=True)
class Engine:
    """The decision: ``chunk`` batches per Lightning step (None: per-step) and why."""

    chunk: int | None
    reason: str

    @property
    def name(self) -> str:
        return "per_step" if self.chunk is None else "chunked"


def _qualname(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def per_step_needs(trainer: pl.Trainer) -> list[str]:
    """The settings and callbacks of ``trainer`` that the chunked engine cannot honour."""
    needs = [
        name
        for name, changed in (
            ("trainer.gradient_clip_val", trainer.gradient_clip_val not in (None, 0)),
            ("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches != 1),
            ("trainer.fast_dev_run", bool(trainer.fast_dev_run)),
            ("trainer.overfit_batches", trainer.overfit_batches > 0),
            ("trainer.limit_train_batches", trainer.limit_train_batches != 1.0),
            ("trainer.val_check_interval", trainer.val_check_interval != 1.0),
            ("trainer.max_steps", trainer.max_steps != -1),
            ("trainer.detect_anomaly", trainer._detect_anomaly),
            ("trainer.profiler", not isinstance(trainer.profiler, PassThroughProfiler)),
        )
        if changed
    ]
    for cb in trainer.callbacks:
        if _qualname(cb) not in CHUNK_SAFE_CALLBACKS:
            needs.append(f"callback {type(cb).__name__}")
        elif isinstance(cb, ModelCheckpoint) and cb._train_time_interval is not None:
            needs.append("ModelCheckpoint(train_time_interval=...)")
    return needs


def step_intervals(trainer: pl.Trainer) -> list[int]:
    """Every batch interval at which the run acts (logging, step-based checkpoints)."""
    intervals = [trainer.log_every_n_steps] if trainer.loggers and trainer.log_every_n_steps > 0 else []
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb._every_n_train_steps:
            intervals.append(cb._every_n_train_steps)
        every = getattr(cb, "every_n_steps", None)  # LastCheckpoint
        if isinstance(every, int) and every > 0:
            intervals.append(every)
    return intervals


def chunk_size(intervals: list[int], limit: int = MAX_CHUNK) -> int:
    """The largest chunk up to ``limit`` that divides every interval."""
    g = math.gcd(*intervals) if intervals else limit
    return max(d for d in range(1, min(g, limit) + 1) if g % d == 0)


def choose_engine(trainer: pl.Trainer, engine: str = "auto") -> Engine:
    """Decides the engine for ``trainer``; ``engine`` is ``auto``, ``chunked`` or ``per_step``.

    Raises:
        MnistlabError: For an unknown ``engine``, or ``chunked`` with a setting it cannot honour.
    """
    if engine not in ENGINES:
        raise MnistlabError(f"engine={engine!r} is unknown; choose one of {', '.join(ENGINES)}")
    if engine == "per_step":
        return Engine(None, "engine=per_step")
    needs = per_step_needs(trainer)
    if needs and engine == "chunked":
        raise MnistlabError(
            f"engine=chunked cannot honour {', '.join(needs)}: those need Lightning's loop at every batch; "
            "use engine=auto (or per_step)"
        )
    if needs:
        return Engine(None, f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} Lightning's loop at every batch")
    chunk = chunk_size(step_intervals(trainer))
    return Engine(chunk, f"every setting and callback of this run is exact with chunks of {chunk} batches")


def configure_engine(
    trainer: pl.Trainer, system: pl.LightningModule, datamodule: pl.LightningDataModule, engine: str = "auto"
) -> Engine:
    """Chooses the engine, sets the system and the data module up for it and says which, in one log line."""
    choice = choose_engine(trainer, engine)
    system.automatic_optimization = choice.chunk is None
    datamodule.chunk = choice.chunk
    label = "per-step" if choice.chunk is None else f"chunked ({choice.chunk} batches per Lightning step)"
    log.info("engine: %s: %s", label, choice.reason)
    return choice
