"""Pipeline (c) of the benchmark: MNIST trained the way most Lightning examples do it.

torchvision's ``MNIST`` with ``ToTensor`` (a PIL image per sample), a shuffling ``DataLoader``
that collates 32 samples per step, automatic optimization, ``self.log`` on every step and a
torchmetrics accuracy updated and logged per step. It exists to be timed, not to be used.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from mnistlab.data.files import find_file
from mnistlab.data.idx import read_bytes
from mnistlab.data.specs import MNIST


class TypicalModule(pl.LightningModule):
    """A network, cross-entropy, Adam and per-step logging, as in the usual tutorials."""

    def __init__(self, net: nn.Module, optimizer: Callable, loss: Callable) -> None:
        super().__init__()
        from torchmetrics.classification import MulticlassAccuracy

        self.net, self.optimizer_factory, self.loss = net, optimizer, loss
        self.train_acc = MulticlassAccuracy(10, average="micro")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)  # (B, 10)
        loss = self.loss(logits, y)
        self.train_acc(logits.argmax(-1), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())


def torchvision_mnist(mnist_root: Path, indices: torch.Tensor, workdir: Path) -> torch.utils.data.Dataset:
    """torchvision's MNIST train set with ``ToTensor``, restricted to ``indices``.

    torchvision reads only uncompressed files from ``<root>/MNIST/raw``; they are written
    into ``workdir`` from the IDX files in ``mnist_root``.
    """
    from torchvision import datasets, transforms

    raw = workdir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for resource in MNIST.resources:
        (raw / resource.name).write_bytes(read_bytes(find_file(mnist_root, resource)))
    dataset = datasets.MNIST(str(workdir), train=True, transform=transforms.ToTensor(), download=False)
    return torch.utils.data.Subset(dataset, indices.tolist())


def fit_typical(
    module: TypicalModule,
    mnist_root: Path,
    indices: torch.Tensor,
    callbacks: list[pl.Callback],
    epochs: int,
    accelerator: str = "cpu",
    batch_size: int = 32,
    steps: int | None = None,
) -> None:
    """Trains ``module`` for ``epochs`` with Lightning's default logger, checkpointing and progress bar."""
    with tempfile.TemporaryDirectory() as tmp:
        dataset = torchvision_mnist(mnist_root, indices, Path(tmp))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=1,
            default_root_dir=tmp,
            callbacks=callbacks,
            limit_train_batches=steps,
            log_every_n_steps=50,
            enable_model_summary=False,
        )
        trainer.fit(module, loader)
