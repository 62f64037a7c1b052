"""The per-epoch confusion matrix image, drawn with Pillow.

matplotlib needs about 170 ms to lay out and render ``viz.confusion_matrix_figure`` (100
annotated cells, tick labels, colorbar), some 10% of an epoch of the hidden model on a 2-core
CPU. Pillow draws the same heatmap and counts in about 2 ms, so validation draws this image
every epoch and the matplotlib figure is kept for the one-off test matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

CELL = 40  # pixels per matrix cell
FONT_SIZE = 13


def _blues(fraction: np.ndarray) -> np.ndarray:
    """matplotlib's "Blues" colormap (as in the figure) for values in [0, 1]; returns (..., 3) uint8."""
    from matplotlib import colormaps  # already imported by torchmetrics, so free

    return (colormaps["Blues"](fraction)[..., :3] * 255).astype(np.uint8)


def confusion_matrix_image(
    confmat: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix"
) -> np.ndarray:
    """An annotated heatmap, rows actual and columns predicted, like ``viz.confusion_matrix_figure``.

    Args:
        confmat: (C, C) counts.
        class_names: C labels for both axes.
        title: Text above the matrix.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    from PIL import Image, ImageDraw, ImageFont

    counts = confmat.detach().cpu().numpy()
    n = len(class_names)
    font = ImageFont.load_default(size=FONT_SIZE)
    label_w = int(max(font.getlength(name) for name in class_names)) + 8
    left, top = label_w + FONT_SIZE + 12, 2 * FONT_SIZE + 14
    width, height = left + n * CELL + 10, top + n * CELL + label_w + FONT_SIZE + 14
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)

    # Cells: one resized (C, C) colour array instead of C*C rectangles.
    colours = _blues(counts / max(counts.max(), 1))  # (C, C, 3)
    img.paste(Image.fromarray(colours).resize((n * CELL, n * CELL), Image.NEAREST), (left, top))
    threshold = counts.max() / 2
    for i in range(n):
        for j in range(n):
            colour = "white" if counts[i, j] > threshold else "black"
            centre = (left + j * CELL + CELL // 2, top + i * CELL + CELL // 2)
            draw.text(centre, str(int(counts[i, j])), fill=colour, font=font, anchor="mm")

    draw.text((width // 2, 6), title, fill="black", font=font, anchor="mt")
    for k, name in enumerate(class_names):
        draw.text((left - 6, top + k * CELL + CELL // 2), name, fill="black", font=font, anchor="rm")
        # Column labels are drawn sideways so long names (Fashion-MNIST) fit.
        label = Image.new("RGB", (label_w, FONT_SIZE + 4), "white")
        ImageDraw.Draw(label).text((label_w - 2, (FONT_SIZE + 4) // 2), name, fill="black", font=font, anchor="rm")
        img.paste(label.rotate(90, expand=True), (left + k * CELL + (CELL - FONT_SIZE - 4) // 2, top + n * CELL + 4))
    draw.text((left + n * CELL // 2, height - 6), "Predicted Values", fill="black", font=font, anchor="mb")
    side = Image.new("RGB", (n * CELL, FONT_SIZE + 4), "white")
    ImageDraw.Draw(side).text((n * CELL // 2, 2), "Actual Values", fill="black", font=font, anchor="mt")
    img.paste(side.rotate(90, expand=True), (4, top))
    return np.asarray(img)
