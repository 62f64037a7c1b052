"""The notebook's networks as plain ``nn.Module``s, and the factory that names them."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

Head = Literal["softmax", "sigmoid"]
Init = Literal["torch", "keras"]
Arch = Literal["linear", "hidden"]

IMAGE_PIXELS = 28 * 28


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] -> Linear, returning logits.

    Args:
        hidden_units: Width of the hidden layer; 0 means none (the linear model).
        num_classes: Output width.
        head: How logits become probabilities: ``softmax`` (trained with cross-entropy)
            or ``sigmoid`` (the notebook's ``Dense(10, sigmoid)``, trained with Keras'
            sparse categorical cross-entropy; see ``mnistlab.systems.losses``).
        init: ``torch`` keeps PyTorch's default init; ``keras`` is glorot-uniform
            weights and zero biases, as in the notebook.
    """

    def __init__(self, hidden_units: int = 100, num_classes: int = 10, head: Head = "softmax", init: Init = "torch"):
        super().__init__()
        if head not in ("softmax", "sigmoid"):
            raise ValueError(f"model.head={head!r} must be 'softmax' or 'sigmoid'")
        if init not in ("torch", "keras"):
            raise ValueError(f"model.init={init!r} must be 'torch' or 'keras'")
        self.spec: dict[str, Any] = {
            "hidden_units": hidden_units,
            "num_classes": num_classes,
            "head": head,
            "init": init,
        }
        self.head = head
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

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, C) that sum to 1; sigmoid outputs are renormalised as Keras does."""
        if self.head == "softmax":
            return logits.softmax(-1)
        p = logits.sigmoid()
        return p / p.sum(-1, keepdim=True)


def build_model(
    arch: Arch = "hidden", hidden_units: int = 100, num_classes: int = 10, head: Head = "softmax", init: Init = "torch"
) -> MLP:
    """Builds a named network: ``linear`` (784->10) or ``hidden`` (784->hidden_units->10).

    Raises:
        ValueError: For an unknown ``arch`` or a width below 1.
    """
    if arch == "linear":
        return MLP(0, num_classes, head, init)
    if arch != "hidden":
        raise ValueError(f"model.arch={arch!r} must be 'linear' or 'hidden'")
    if hidden_units < 1:
        raise ValueError(f"model.hidden_units={hidden_units} must be >= 1")
    return MLP(hidden_units, num_classes, head, init)
