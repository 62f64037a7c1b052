"""The per-epoch confusion matrix image drawn with Pillow."""

from __future__ import annotations

import torch

from mnistlab.confmat_image import CELL, confusion_matrix_image
from mnistlab.data import FASHION_MNIST


def test_heatmap_cells_follow_the_counts() -> None:
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts[3, 3] = 900
    image = confusion_matrix_image(counts, [str(i) for i in range(10)], "val confusion matrix")
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 10 * CELL and image.shape[1] > 10 * CELL
    # One cell in the darkest blue of the colormap (less its digits), none when the matrix is empty.
    darkest = (image == (8, 48, 107)).all(-1).sum()
    assert CELL * CELL // 2 < darkest <= CELL * CELL
    empty = confusion_matrix_image(torch.zeros(10, 10, dtype=torch.long), [str(i) for i in range(10)])
    assert not (empty == (8, 48, 107)).all(-1).any()


def test_long_class_names_fit() -> None:
    image = confusion_matrix_image(torch.eye(10, dtype=torch.long) * 100, FASHION_MNIST.classes)
    assert image.shape[0] > 10 * CELL + 60  # room below the matrix for the sideways labels
