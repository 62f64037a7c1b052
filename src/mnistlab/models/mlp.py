"""The notebook's networks as plain ``nn.Module``s: linear (``hidden_units=0``) and one hidden layer."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Init = Literal["torch", "keras"]

IMAGE_PIXELS = 28 * 28


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] -> Linear, returning logits.

    How the logits become probabilities (softmax, or the notebook's sigmoid) is the
    system's ``head``, not the network's (see ``mnistlab.systems.Classifier``).

    Args:
        hidden_units: Width of the hidden layer; 0 means none (the linear model).
        num_classes: Output width.
        init: ``torch`` keeps PyTorch's default init; ``keras`` is glorot-uniform
            weights and zero biases, as in the notebook.
    """

    def __init__(self, hidden_units: int = 100, num_classes: int = 10, init: Init = "torch") -> None:
        super().__init__()
        if init not in ("torch", "keras"):
            raise ValueError(f"model.init={init!r} must be 'torch' or 'keras'")
        if hidden_units < 0:
            raise ValueError(f"model.hidden_units={hidden_units} must be >= 0 (0: no hidden layer)")
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
        width = IMAGE_PIXELS
        if hidden_units > 0:
            layers += [nn.Linear(width, hidden_units), nn.ReLU()]
            width = hidden_units
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        if init == "keras":
            for m in self.layers:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, num_classes) logits
