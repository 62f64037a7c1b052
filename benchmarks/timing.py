"""Seconds per epoch of mnistlab against a hand-written loop, timed in one process on the same data.

``benchmarks/benchmark.py`` builds mnistlab's runs exactly as ``scripts/train.py`` does (default
callbacks and logger) and adds an ``EpochTimer`` after the engine is chosen; this module holds the
timer, the plain loop it is compared with and the table.
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from mnistlab.atomic_files import write_json
from mnistlab.composition import Run
from mnistlab.data.loaders import TrainBatches


def synchronize(device: torch.device) -> None:
    """Waits for queued device work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clocks() -> tuple[float, float]:
    """Wall-clock and process CPU seconds; CPU time varies less when other jobs share the cores."""
    return time.perf_counter(), time.process_time()


class EpochTimer(pl.Callback):
    """Records when each training epoch starts and when training ends.

    An epoch's time runs from its start to the next epoch's start, so it includes validation,
    checkpointing, logging and the progress bar: everything a user waits for.
    """

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []  # (wall, process CPU) seconds
        self.steps: list[int] = []  # trainer.global_step at each epoch start
        self.end: tuple[float, float] | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.starts.append(clocks())
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.end = clocks()
        self.steps.append(trainer.global_step)

    @property
    def times(self) -> tuple[list[float], list[float]]:
        """Wall-clock and CPU seconds of each epoch."""
        marks = [*self.starts, self.end]
        pairs = list(itertools.pairwise(marks))
        return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps of the last epoch."""
        return self.steps[-1] - self.steps[-2]


def plain_loop(
    net: nn.Module,
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int = 32,
    steps: int | None = None,
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """A hand-written training loop over tensors on the device; returns wall and CPU seconds per epoch.

    Each epoch draws a random permutation and takes one optimizer step per slice of
    ``batch_size`` indices, as people write it when they leave Lightning.

    Args:
        net: The network, on the same device as ``images``.
        optimizer: Called with the parameters.
        loss: ``(logits (B, C), labels (B,)) -> scalar``.
        images: (N, 1, 28, 28) float.
        labels: (N,) int64.
        epochs: Epochs to time.
        batch_size: Samples per step.
        steps: Optimizer steps per epoch; all of the data when None.
        seed: Seed of the permutations.
    """
    opt = optimizer(net.parameters())
    g = torch.Generator().manual_seed(seed)
    n = len(labels) if steps is None else min(len(labels), steps * batch_size)
    walls, cpus = [], []
    for _ in range(epochs):
        synchronize(images.device)
        wall, cpu = clocks()
        perm = torch.randperm(len(labels), generator=g).to(images.device)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            batch_loss = loss(net(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
        synchronize(images.device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


class BareModule(pl.LightningModule):
    """Lightning's floor: a network, its loss and optimizer, automatic optimization, nothing else."""

    def __init__(self, net: nn.Module, optimizer: Callable, loss: Callable) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.loss = net, optimizer, loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def lightning_floor(
    net: nn.Module,
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable,
    epochs: int,
    steps: int,
    accelerator: str,
) -> EpochTimer:
    """Fits a ``BareModule`` on ``batches`` (mnistlab's loader over the same on-device tensors).

    No logger, no callback but the timer, no progress bar, checkpoint or validation: what is left
    is Lightning's own loop, automatic optimization and the step itself.
    """
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=steps,
        num_sanity_val_steps=0,
    )
    trainer.fit(BareModule(net, optimizer, loss), train_dataloaders=batches)
    return timer


@dataclass
class Timing:
    """Measured epochs of one pipeline; warm-up epochs are dropped before the median."""

    name: str
    epoch_seconds: list[float]
    epoch_cpu_seconds: list[float]
    steps_per_epoch: int
    warmup: int = 1
    ratio: float | None = None  # median over the plain loop's median
    cpu_ratio: float | None = None  # the same for CPU time
    measured: list[float] = field(init=False)
    median_s: float = field(init=False)
    median_cpu_s: float = field(init=False)
    steps_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.measured = self.epoch_seconds[self.warmup :] or self.epoch_seconds
        self.median_s = statistics.median(self.measured)
        self.median_cpu_s = statistics.median(self.epoch_cpu_seconds[self.warmup :] or self.epoch_cpu_seconds)
        self.steps_per_s = self.steps_per_epoch / self.median_s


def compare(timings: list[Timing]) -> list[Timing]:
    """Fills in each timing's ratio to the first (the plain loop)."""
    for t in timings:
        t.ratio = t.median_s / timings[0].median_s
        t.cpu_ratio = t.median_cpu_s / timings[0].median_cpu_s
    return timings


def time_fit(name: str, run: Run, warmup: int) -> Timing:
    """Fits ``run`` with an ``EpochTimer`` added after its engine was chosen (so it times that engine)."""
    timer = EpochTimer()
    run.trainer.callbacks.append(timer)
    run.trainer.fit(run.system, datamodule=run.datamodule)
    return Timing(f"{name} [{run.engine.name}]", *timer.times, timer.steps_per_epoch, warmup)


def compare_pipelines(
    default: Run,
    per_step: Run,
    make_net: Callable[[], nn.Module],
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    warmup: int = 1,
    typical: bool = False,
) -> list[Timing]:
    """Times (b) the default run, (b1) the same run per-step, (a) the plain loop, (f) Lightning's floor, maybe (c).

    Args:
        default: The run as ``scripts/train.py`` builds it; its ``max_epochs`` is every pipeline's.
        per_step: The same config with ``engine=per_step``.
        make_net: Builds a fresh network of the same kind for (a) and (c).
        optimizer: The optimizer factory of (a) and (c).
        warmup: Epochs left out of the medians.
        typical: Also time (c), the typical Lightning pipeline.

    Returns:
        (a), (b), (b1), (f) and maybe (c), with their ratios to (a).
    """
    epochs = default.trainer.max_epochs
    timed = [time_fit("(b) mnistlab, default run", default, warmup)]
    timed.append(time_fit("(b1) mnistlab, forced per-step", per_step, warmup))
    steps = timed[0].steps_per_epoch  # every pipeline takes exactly as many optimizer steps per epoch
    images, labels = default.datamodule.train_set
    batch_size = default.datamodule.hparams.batch_size
    walls, cpus = plain_loop(
        make_net().to(images.device), optimizer, default.system.loss, images, labels, epochs, batch_size, steps
    )
    timings = [Timing("(a) plain PyTorch loop", walls, cpus, steps, warmup), *timed]
    accelerator = "gpu" if images.is_cuda else "cpu"
    batches = TrainBatches(images, labels, batch_size, seed=default.datamodule.hparams.seed)
    floor = lightning_floor(make_net().to(images.device), optimizer, default.system.loss, batches, epochs, steps,
                            accelerator)  # fmt: skip
    timings.append(Timing("(f) Lightning's floor: bare LightningModule", *floor.times, steps, warmup))
    if typical:
        from typical_lightning import TypicalModule, fit_typical

        timer = EpochTimer()
        train_idx, _ = default.datamodule.split_indices()
        module = TypicalModule(make_net(), optimizer, default.system.loss)
        fit_typical(module, default.datamodule.root, train_idx, [timer], epochs, accelerator, batch_size, steps)
        timings.append(Timing("(c) typical Lightning pipeline", *timer.times, steps, warmup))
    return compare(timings)


def table(timings: list[Timing]) -> str:
    """The results as a Markdown table: median s/epoch, steps/s, ratios and every measured epoch."""
    rows = [
        "| pipeline | s/epoch (median) | steps/s | vs (a) | measured epochs (s) | CPU s/epoch | CPU vs (a) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in timings:
        epochs = " ".join(f"{s:.2f}" for s in t.measured)
        rows.append(
            f"| {t.name} | {t.median_s:.2f} | {t.steps_per_s:.0f} | {t.ratio:.2f}x | {epochs} "
            f"| {t.median_cpu_s:.2f} | {t.cpu_ratio:.2f}x |"
        )
    return "\n".join(rows)


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_results(path: Path, timings: list[Timing], device: str, extra: dict[str, Any] | None = None) -> None:
    """Writes the timings and the machine as JSON."""
    write_json(
        Path(path), {"device": device, "machine": machine(), "pipelines": [asdict(t) for t in timings], **(extra or {})}
    )
