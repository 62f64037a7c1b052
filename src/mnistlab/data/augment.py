"""Batch-wise data augmentation on the training device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class RandomAffine:
    """A small random rotation, zoom and shift per image, for a whole batch in one call.

    Each image gets its own transform, drawn uniformly from the given ranges, and the batch
    is resampled with one ``F.affine_grid`` + ``F.grid_sample`` (bilinear). torchvision's
    ``v2.RandomAffine`` would draw a single transform for the whole batch tensor, which is
    far weaker augmentation, hence the two functional calls here. Pixels that come from
    outside the image repeat the border, which is background in MNIST-style images, in
    plain [0, 1] and standardised inputs alike.

    Args:
        degrees: Maximum rotation, in degrees, either way.
        translate: Maximum shift along each axis, as a fraction of the image side (0.1 = 2.8 px).
        scale: Maximum relative zoom either way (0.1 draws sizes in [0.9, 1.1]).
            All three 0 is the identity, which is falsy so that loaders skip it.
    """

    def __init__(self, degrees: float = 5.0, translate: float = 0.05, scale: float = 0.05) -> None:
        # Past a half-turn the rotations repeat; past the image's side a shift leaves only border (torchvision's
        # RandomAffine refuses that too): the digits were shifted out of the picture without a word.
        if not (0 <= degrees <= 180 and 0 <= translate <= 1 and 0 <= scale < 1):
            raise ValueError(
                f"augment needs 0 <= degrees <= 180, 0 <= translate <= 1 and 0 <= scale < 1, got {degrees}, "
                f"{translate}, {scale}"
            )
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def __bool__(self) -> bool:
        """False for the identity (all ranges 0), which callers can skip."""
        return bool(self.degrees or self.translate or self.scale)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale})"

    def theta(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random affine matrices (n, 2, 3) mapping output to input coordinates in [-1, 1]."""
        u = torch.rand(n, 4, device=device, generator=generator) * 2 - 1  # (n, 4) uniform in [-1, 1)
        angle = u[:, 0] * math.radians(self.degrees)
        inv_scale = 1 / (1 + u[:, 1] * self.scale)  # sampling a smaller area enlarges the digit
        # The grid spans 2 units per side, so a shift of f of the side is 2f.
        shift = u[:, 2:] * 2 * self.translate  # (n, 2)
        cos, sin = angle.cos() * inv_scale, angle.sin() * inv_scale
        rows = (torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1))
        return torch.stack(rows, 1)  # (n, 2, 3)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transforms a batch (N, C, H, W) of float images; the result has the same shape."""
        theta = self.theta(len(images), images.device, generator).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (N, H, W, 2)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
