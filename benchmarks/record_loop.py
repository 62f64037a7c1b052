"""The MNIST speed record's recipe as a plain PyTorch loop: (r) of ``benchmarks/speedrun.py``.

The recipe: conv 1->24 5x5, max-pool 2, ReLU, conv 24->32 3x3, max-pool 2, ReLU, linear 800->256,
ReLU, linear 256->10; the 60k training images normalised and on the device, in one fixed shuffle;
one epoch at batch 256; Adam at lr 0.01 with betas (0.7, 0.9); OneCycleLR without momentum cycling.
Written as people write it, with nothing of mnistlab in the loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.files import load_split
from mnistlab.data.specs import SPECS

Split = tuple[torch.Tensor, torch.Tensor]  # images (N, 1, 28, 28) float, labels (N,) int64


def record_net() -> nn.Module:
    """The record's network, (B, 1, 28, 28) -> (B, 10) logits."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(24, 32, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(800, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def load_mnist(root: Path, device: torch.device) -> tuple[Split, Split]:
    """The 60k training and 10k test images, normalised with the training mean and std, on ``device``."""
    spec = SPECS["mnist"]

    def to_device(train: bool) -> Split:
        images, labels = load_split(root, spec, train=train)
        x = images.to(device).unsqueeze(1).float().div_(255).sub_(spec.mean).div_(spec.std)  # (N, 1, 28, 28)
        return x, labels.to(device)

    return to_device(True), to_device(False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_record(train: Split, seed: int, steps: int | None = None, batch_size: int = 256) -> tuple[nn.Module, float]:
    """Trains the record's recipe for one epoch; returns the network and the training seconds.

    The shuffle is drawn before the clock starts (the record keeps its data shuffled once, on the
    device); the clock covers every optimizer step and waits for the device at the end.

    Args:
        train: Training images and labels on the device.
        seed: Seeds the weights and the shuffle.
        steps: Stop after this many steps (a warm-up); None: the whole epoch.
        batch_size: Samples per step.
    """
    images, labels = train
    device = images.device
    torch.manual_seed(seed)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).to(device)
    images, labels = images[perm], labels[perm]
    net = record_net().to(device)
    total = -(-len(labels) // batch_size) if steps is None else steps
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.7, 0.9))
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=total, cycle_momentum=False)
    synchronize(device)
    start = time.perf_counter()
    for i in range(total):
        x, y = images[i * batch_size : (i + 1) * batch_size], labels[i * batch_size : (i + 1) * batch_size]
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    synchronize(device)
    return net, time.perf_counter() - start


@torch.no_grad()
def accuracy(net: nn.Module, test: Split, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``net`` on ``test``."""
    images, labels = test
    batches = zip(images.split(batch_size), labels.split(batch_size), strict=True)
    correct = sum(int((net(x).argmax(-1) == y).sum()) for x, y in batches)
    return correct / len(labels)
