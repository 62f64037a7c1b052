"""The notebook's networks as plain ``nn.Module``s, and the factory that names them."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Init = Literal["torch", "keras"]
Arch = Literal["linear", "hidden"]

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


def build_model(arch: Arch = "hidden", hidden_units: int = 100, num_classes: int = 10, init: Init = "torch") -> MLP:
    """Builds a named network: ``linear`` (784->10) or ``hidden`` (784->hidden_units->10).

    Raises:
        ValueError: For an unknown ``arch`` or a width below 1.
    """
    if arch == "linear":
        return MLP(0, num_classes, init)
    if arch != "hidden":
        raise ValueError(f"model.arch={arch!r} must be 'linear' or 'hidden'")
    if hidden_units < 1:
        raise ValueError(f"model.hidden_units={hidden_units} must be >= 1")
    return MLP(hidden_units, num_classes, init)
