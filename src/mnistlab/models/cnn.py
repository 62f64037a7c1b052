"""A small convolutional network: the worked example of a network that is not the notebook's."""

from __future__ import annotations

import torch
from torch import nn


class CNN(nn.Module):
    """Two conv blocks and a linear head, returning logits.

    Each block is a 5x5 convolution without padding, batch norm, ReLU and 2x2 max pooling:
    (B, 1, 28, 28) -> (B, c1, 12, 12) -> (B, c2, 4, 4), then dropout and one linear layer.
    Unpadded 5x5 kernels shrink the maps early, so this costs ~4x less compute than padded
    3x3 blocks of the same widths; with (32, 64) it has 62,538 parameters.

    Args:
        channels: Output channels of the two conv blocks.
        num_classes: Output width.
        dropout: Dropout probability before the linear head.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), num_classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"model.channels={list(channels)} must be two widths >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout={dropout} must be in [0, 1)")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),  # (B, c1, 12, 12)
            nn.Conv2d(c1, c2, 5), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),  # (B, c2, 4, 4)
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes) logits
