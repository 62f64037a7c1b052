"""Seconds per epoch of mnistlab against a hand-written loop, timed in one process on the same data.

``benchmarks/benchmark.py`` builds mnistlab's runs exactly as ``scripts/train.py`` does (default
callbacks and logger) and adds an ``EpochTimer`` after the engine is chosen; this module holds the
timer, the plain loop it is compared with and the table. An epoch of the plain loop runs before
every epoch of each pipeline, and each epoch is compared with the one next to it: on a shared VM the
speed drifts by a third within a minute, which a ratio of two pipelines timed a minute apart took in.
"""

from __future__ import annotations

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
    """Records when each training epoch starts and ends.

    An epoch's time runs from its start to the next epoch's start (or the end of training), so it
    includes validation, checkpointing, logging and the progress bar: everything a user waits for.
    ``between`` (a ``PlainLoop``) runs one epoch of its own between two epochs of the fit, outside
    both, so that each epoch of the fit has a baseline epoch measured next to it.
    """

    def __init__(self, between: PlainLoop | None = None) -> None:
        self.between = between
        self.starts: list[tuple[float, float]] = []  # (wall, process CPU) seconds
        self.ends: list[tuple[float, float]] = []
        self.steps: list[int] = []  # trainer.global_step at each epoch start
        self.end: tuple[float, float] | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        if self.starts:
            self.ends.append(clocks())
        if self.between is not None:
            self.between.run_epoch(trainer)
        self.starts.append(clocks())
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.end = clocks()
        self.ends.append(self.end)
        self.steps.append(trainer.global_step)

    @property
    def times(self) -> tuple[list[float], list[float]]:
        """Wall-clock and CPU seconds of each epoch."""
        pairs = list(zip(self.starts, self.ends, strict=True))
        return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps of the last epoch."""
        return self.steps[-1] - self.steps[-2]


class PlainLoop:
    """A hand-written training loop over the run's on-device tensors, timed one epoch at a time.

    Each epoch draws a random permutation and takes one optimizer step per slice of
    ``batch_size`` indices, as people write it when they leave Lightning. It trains on the
    training tensors of the first fit it runs beside (``EpochTimer(between=...)``).

    Args:
        net: A fresh network, moved to the data's device.
        optimizer: Called with the parameters.
        loss: ``(logits (B, C), labels (B,)) -> scalar``.
        batch_size: Samples per step.
        seed: Seed of the permutations.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        self.net, self.optimizer, self.loss, self.batch_size = net, optimizer, loss, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.data: tuple[torch.Tensor, torch.Tensor] | None = None  # images (N, 1, 28, 28), labels (N,)
        self.opt: torch.optim.Optimizer | None = None
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def run_epoch(self, trainer: pl.Trainer) -> None:
        """One epoch of as many optimizer steps as ``trainer`` takes an epoch, appended to ``walls`` and ``cpus``."""
        if self.data is None:
            self.data = trainer.datamodule.train_set  # on the device: the fit's own tensors
            self.net.to(self.data[0].device)
            self.opt = self.optimizer(self.net.parameters())
        images, labels = self.data
        n = min(len(labels), trainer.num_training_batches * self.batch_size)
        synchronize(images.device)
        wall, cpu = clocks()
        perm = torch.randperm(len(labels), generator=self.generator).to(images.device)
        for i in range(0, n, self.batch_size):
            idx = perm[i : i + self.batch_size]
            batch_loss = self.loss(self.net(images[idx]), labels[idx])
            self.opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            self.opt.step()
        synchronize(images.device)
        self.walls.append(time.perf_counter() - wall)
        self.cpus.append(time.process_time() - cpu)

    def take(self) -> tuple[list[float], list[float]]:
        """The epochs run since the last call: wall and CPU seconds."""
        walls, cpus, self.walls, self.cpus = self.walls, self.cpus, [], []
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
    plain: PlainLoop,
) -> EpochTimer:
    """Fits a ``BareModule`` on ``batches`` (mnistlab's loader over the same on-device tensors).

    No logger, no callback but the timer, no progress bar, checkpoint or validation: what is left
    is Lightning's own loop, automatic optimization and the step itself.
    """
    timer = EpochTimer(plain)
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
    """Measured epochs of one pipeline and of the plain loop's epochs run between them; warm-up epochs are dropped.

    Each epoch's ratio is to the plain-loop epoch run just before it, so that a slower or faster spell of a
    shared machine weighs on both sides of a ratio alike; a pipeline's ratio is the median of its epochs'.
    """

    name: str
    epoch_seconds: list[float]
    epoch_cpu_seconds: list[float]
    steps_per_epoch: int
    warmup: int = 1
    baseline_seconds: list[float] = field(default_factory=list)  # the plain loop's epochs, one before each
    baseline_cpu_seconds: list[float] = field(default_factory=list)
    ratio: float = field(init=False)  # median of each epoch's time over its plain-loop epoch's (1 for the loop)
    cpu_ratio: float = field(init=False)  # the same for CPU time
    measured: list[float] = field(init=False)
    median_s: float = field(init=False)
    median_cpu_s: float = field(init=False)
    steps_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.measured = self.epoch_seconds[self.warmup :] or self.epoch_seconds
        self.median_s = statistics.median(self.measured)
        self.median_cpu_s = statistics.median(self.epoch_cpu_seconds[self.warmup :] or self.epoch_cpu_seconds)
        self.steps_per_s = self.steps_per_epoch / self.median_s
        self.ratio = self._paired(self.epoch_seconds, self.baseline_seconds)
        self.cpu_ratio = self._paired(self.epoch_cpu_seconds, self.baseline_cpu_seconds)

    def _paired(self, epochs: list[float], baseline: list[float]) -> float:
        if not baseline:
            return 1.0
        ratios = [t / b for t, b in zip(epochs, baseline, strict=True)]
        return statistics.median(ratios[self.warmup :] or ratios)


def time_fit(name: str, run: Run, warmup: int, plain: PlainLoop) -> Timing:
    """Fits ``run`` with an ``EpochTimer`` added after its engine was chosen (so it times that engine)."""
    timer = EpochTimer(plain)
    run.trainer.callbacks.append(timer)
    run.trainer.fit(run.system, datamodule=run.datamodule)
    return Timing(f"{name} [{run.engine.name}]", *timer.times, timer.steps_per_epoch, warmup, *plain.take())


def compare_pipelines(
    default: Run,
    per_step: Run,
    make_net: Callable[[], nn.Module],
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    warmup: int = 1,
    typical: bool = False,
) -> list[Timing]:
    """Times (b) the default run, (b1) the same run per-step, (f) Lightning's floor and maybe (c), each epoch next to
    an epoch of (a), the plain loop.

    Args:
        default: The run as ``scripts/train.py`` builds it; its ``max_epochs`` is every pipeline's.
        per_step: The same config with ``engine=per_step``.
        make_net: Builds a fresh network of the same kind for (a), (f) and (c).
        optimizer: The optimizer factory of (a), (f) and (c).
        warmup: Epochs left out of the medians.
        typical: Also time (c), the typical Lightning pipeline.

    Returns:
        (a), (b), (b1), (f) and maybe (c), with their ratios to (a).
    """
    epochs = default.trainer.max_epochs
    batch_size = default.datamodule.hparams.batch_size
    plain = PlainLoop(make_net(), optimizer, default.system.loss, batch_size)
    timed = [time_fit("(b) mnistlab, default run", default, warmup, plain)]
    timed.append(time_fit("(b1) mnistlab, forced per-step", per_step, warmup, plain))
    steps = timed[0].steps_per_epoch  # every pipeline takes exactly as many optimizer steps per epoch
    images, labels = default.datamodule.train_set
    accelerator = "gpu" if images.is_cuda else "cpu"
    batches = TrainBatches(images, labels, batch_size, seed=default.datamodule.hparams.seed)
    floor = lightning_floor(make_net().to(images.device), optimizer, default.system.loss, batches, epochs, steps,
                            accelerator, plain)  # fmt: skip
    timed.append(Timing("(f) Lightning's floor: bare LightningModule", *floor.times, steps, warmup, *plain.take()))
    if typical:
        from typical_lightning import TypicalModule, fit_typical

        timer = EpochTimer(plain)
        train_idx, _ = default.datamodule.split_indices()
        module = TypicalModule(make_net(), optimizer, default.system.loss)
        fit_typical(module, default.datamodule.root, train_idx, [timer], epochs, accelerator, batch_size, steps)
        timed.append(Timing("(c) typical Lightning pipeline", *timer.times, steps, warmup, *plain.take()))
    walls = [w for t in timed for w in t.baseline_seconds[warmup:]]  # every measured epoch of (a)
    cpus = [c for t in timed for c in t.baseline_cpu_seconds[warmup:]]
    return [Timing("(a) plain PyTorch loop", walls, cpus, steps, warmup=0), *timed]


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
