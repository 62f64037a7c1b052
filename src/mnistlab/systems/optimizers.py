"""The optimizer and schedule factories of a system: their plain records, and their settings checked before any work."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import nn

from mnistlab.checkpoint_records import check_plain
from mnistlab.errors import ConfigError

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
NOTEBOOK_ADAM: OptimizerFactory = partial(torch.optim.Adam, lr=1e-3)
EXAMPLES = {
    "optimizer": "partial(torch.optim.Adam, lr=1e-3)",
    "scheduler": "partial(mnistlab.systems.schedules.one_cycle, max_lr=1e-2)",
}


def describe(factory: Callable | None, group: str) -> dict[str, Any] | None:
    """A plain-value record of a ``functools.partial`` (kept in checkpoints instead of a pickle).

    Raises:
        ConfigError: For what no record could rebuild, before any work (a checkpoint would save, then fail to
            load): a built optimizer instead of its factory, a lambda or local function, positional settings.
    """
    if factory is None:
        return None
    func = factory.func if isinstance(factory, partial) else factory
    how = f"give a class or a module-level function, or a functools.partial of one, e.g. {EXAMPLES[group]}"
    if not callable(func) or not hasattr(func, "__qualname__"):
        raise ConfigError(
            f"{group}: got a built {type(func).__name__} object, not its factory; {how} (the system builds it itself)"
        )
    if "<" in func.__qualname__:  # <lambda>, <locals>: no import path leads back to it
        raise ConfigError(f"{group}: {func.__qualname__} cannot be recorded in a checkpoint; {how}")
    if isinstance(factory, partial) and factory.args:
        raise ConfigError(f"{group}: functools.partial of {func.__qualname__} with positional settings {factory.args}, "
                          "which a checkpoint's record cannot hold; give them by keyword")  # fmt: skip
    keywords = dict(factory.keywords) if isinstance(factory, partial) else {}
    check_plain(keywords, group)
    return {"target": f"{func.__module__}.{func.__qualname__}", **keywords}


def check_factories(optimizer: OptimizerFactory, scheduler: SchedulerFactory | None) -> None:
    """Builds the optimizer, and the schedule over it, once on a stand-in parameter.

    torch checks most settings only when the optimizer or the schedule is built, which Lightning does
    inside ``trainer.fit`` (``configure_optimizers``), after the data is loaded: a negative
    ``weight_decay`` or a ``pct_start`` above 1 would end the run there with a traceback. Built here,
    on one parameter, they cost microseconds and fail as a ``ConfigError`` of one line.
    """
    momentum = optimizer.keywords.get("momentum") if isinstance(optimizer, partial) else None
    if isinstance(momentum, int | float) and momentum >= 1:  # torch takes it; each step then outgrows the last
        raise ConfigError(f"optimizer.momentum={momentum} is out of range: must be a number in 0-1, below 1 (from 1 "
                          "up, every step adds all earlier ones in full and training diverges)")  # fmt: skip
    try:
        built = optimizer([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError, RuntimeError) as exc:  # TypeError: betas=0.9, max_lr='a'
        raise _refused("optimizer", optimizer, exc) from exc
    if scheduler is None:
        return
    try:
        scheduler(built, total_steps=100)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise _refused("scheduler", scheduler, exc) from exc


def _refused(group: str, factory: Callable, exc: Exception) -> ConfigError:
    name = getattr(factory.func if isinstance(factory, partial) else factory, "__qualname__", group)
    # A torch scheduler (StepLR, CosineAnnealingLR) takes no total_steps: say what the system calls instead.
    called = " (a scheduler is called as scheduler(optimizer, total_steps=N), N the run's optimizer steps, as "
    called += "mnistlab.systems.schedules.one_cycle and cosine are: wrap a torch scheduler in such a function)"
    return ConfigError(f"{group}: {name} refused its settings: {exc}" + (called if "'total_steps'" in str(exc) else ""))
