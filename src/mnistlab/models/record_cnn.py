"""The network of the published MNIST speed record (99% in under a second on a laptop GPU)."""

from __future__ import annotations

import torch
from torch import nn


class RecordCNN(nn.Module):
    """Two unpadded convolutions, each followed by 2x2 max pooling and ReLU, then two linear layers.

    (B, 1, 28, 28) -> conv 5x5 -> (B, c1, 24, 24) -> pool -> (B, c1, 12, 12) -> conv 3x3 ->
    (B, c2, 10, 10) -> pool -> (B, c2, 5, 5) -> flatten (B, 25 c2) -> hidden -> (B, num_classes).
    Pooling comes before ReLU (they commute), so ReLU runs on a quarter of the values. With the
    record's widths (24, 32) and 256 hidden units it has 215,194 parameters; there is no batch
    norm and no dropout, so every step does the same work (a CUDA graph can record it).

    Args:
        channels: Output channels of the two convolutions.
        hidden_units: Width of the hidden linear layer.
        num_classes: Output width.
        channels_last: Keep the convolution weights in channels-last (NHWC) memory order, so
            that oneDNN on a CPU runs the convolutions and poolings in NHWC, about twice as fast
            as NCHW for these widths; the values computed are the same up to float rounding.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (24, 32),
        hidden_units: int = 256,
        num_classes: int = 10,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"model.channels={list(channels)} must be two widths >= 1")
        if hidden_units < 1:
            raise ValueError(f"model.hidden_units={hidden_units} must be >= 1")
        c1, c2 = channels
        self.layers = nn.Sequential(
            nn.Conv2d(1, c1, 5), nn.MaxPool2d(2), nn.ReLU(),  # (B, c1, 12, 12)
            nn.Conv2d(c1, c2, 3), nn.MaxPool2d(2), nn.ReLU(),  # (B, c2, 5, 5)
            nn.Flatten(), nn.Linear(c2 * 5 * 5, hidden_units), nn.ReLU(),  # (B, hidden_units)
            nn.Linear(hidden_units, num_classes),
        )  # fmt: skip
        if channels_last:
            # A conv whose weight is channels-last runs in NHWC and returns NHWC; the layers after it follow.
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, num_classes) logits
