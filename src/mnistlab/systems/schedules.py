"""Learning-rate schedules stepped after every optimizer step, built from the run's sizes.

``torch.optim.lr_scheduler.OneCycleLR`` must know the total number of optimizer steps in
advance, and a config cannot do arithmetic, so these factories take the numbers a config
has (epochs, batch size, validation size) and derive the step count the way
``mnistlab.data.loaders.TrainChunks`` does. Use them as ``_partial_: true`` targets: the
system calls the partial with its optimizer.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from mnistlab.data.datamodule import TRAIN_SIZE


def total_steps(epochs: int, batch_size: int, val_size: int = 0, train_size: int = TRAIN_SIZE) -> int:
    """Optimizer steps of a single-process run: ``epochs`` x batches of the training split.

    Under DDP each rank takes fewer steps, so a schedule built from this count ends
    unfinished rather than overrunning.
    """
    if epochs < 1 or batch_size < 1 or not 0 <= val_size < train_size:
        raise ValueError(f"cannot count steps for epochs={epochs}, batch_size={batch_size}, val_size={val_size}")
    return epochs * math.ceil((train_size - val_size) / batch_size)


def one_cycle(
    optimizer: torch.optim.Optimizer,
    max_lr: float,
    epochs: int,
    batch_size: int,
    val_size: int = 0,
    train_size: int = TRAIN_SIZE,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> OneCycleLR:
    """Warm up from ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of the run, then anneal (cosine)."""
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps(epochs, batch_size, val_size, train_size),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


def cosine(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    val_size: int = 0,
    train_size: int = TRAIN_SIZE,
    eta_min: float = 0.0,
) -> CosineAnnealingLR:
    """Cosine decay from the optimizer's learning rate to ``eta_min`` over the whole run."""
    return CosineAnnealingLR(optimizer, T_max=total_steps(epochs, batch_size, val_size, train_size), eta_min=eta_min)
