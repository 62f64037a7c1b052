"""Learning-rate schedules stepped after every optimizer step, sized from the run itself.

Use them as ``_partial_: true`` targets. ``Classifier.configure_optimizers`` calls the
partial with the optimizer and ``total_steps``, the optimizer steps this process will
really take (``trainer.estimated_stepping_batches``: epochs or ``max_steps``, world size,
``limit_train_batches`` and gradient accumulation included), so a schedule ends exactly at
its final learning rate however the run is shaped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from mnistlab.config_checks import open_schedule_error

if TYPE_CHECKING:
    import lightning.pytorch as pl


def total_steps(trainer: pl.Trainer) -> int:
    """The optimizer steps a schedule spans: ``trainer.estimated_stepping_batches``, the steps this process really
    takes (epochs or ``max_steps``, world size, ``limit_train_batches`` and accumulation included; batches under
    either engine).

    Raises:
        ConfigError: For a run of open length (``max_epochs=-1`` without ``max_steps``, perhaps ended by
            ``max_time``), whose infinite count torch's schedules fail on with an ``OverflowError``.
    """
    steps = trainer.estimated_stepping_batches
    if math.isinf(steps):
        raise open_schedule_error("trainer.max_epochs=-1 without trainer.max_steps")
    return int(steps)


def one_cycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    cycle_momentum: bool = True,
) -> OneCycleLR:
    """Warm up from ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of the run, then anneal (cosine).

    ``cycle_momentum`` (torch's default) also cycles the momentum (Adam's first beta) between 0.95 and
    0.85 against the rate; false keeps the optimizer's own betas, as the MNIST speed record does.
    """
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=cycle_momentum,
    )


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, eta_min: float = 0.0) -> CosineAnnealingLR:
    """Cosine decay from the optimizer's learning rate to ``eta_min`` over the whole run."""
    if not eta_min >= 0:  # torch would decay into negative rates: a run that climbs its loss
        raise ValueError(f"eta_min={eta_min} must be >= 0")
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
