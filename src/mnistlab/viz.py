"""Figures. matplotlib is imported here only, and only when something is drawn."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _heatmap(ax, values, labels: list[list[str]], class_names: Sequence[str], title: str) -> None:
    """One annotated heatmap panel: ``values`` (C, C) colour the cells, ``labels`` are their texts."""
    n = len(class_names)
    ax.imshow(values, cmap="Blues", vmin=0)
    ax.set_xticks(range(n), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("Predicted Values")
    ax.set_ylabel("Actual Values")
    ax.set_title(title)
    threshold = values.max() / 2
    for i in range(n):
        for j in range(n):
            color = "white" if values[i, j] > threshold else "black"
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=7, color=color)


def confusion_matrix_figure(confmat: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix"):
    """Annotated heatmaps in the notebook's look: raw counts and the row-normalised view side by side.

    Rows are the actual classes, columns the predicted ones; the normalised panel shows
    each row as fractions of that class (its diagonal is the per-class recall).

    Args:
        confmat: (C, C) counts.
        class_names: C labels for both axes.
        title: Figure title.

    Returns:
        A matplotlib Figure.
    """
    plt = _pyplot()
    counts = confmat.cpu().double()
    rows = counts / counts.sum(1, keepdim=True).clamp_min(1)  # (C, C), each row sums to 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    _heatmap(left, counts.numpy(), [[str(int(v)) for v in r] for r in counts], class_names, "Counts")
    fractions = [[f"{v:.2f}" for v in r] for r in rows.tolist()]
    _heatmap(right, rows.numpy(), fractions, class_names, "Normalised by row (actual class)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_grid_figure(images: torch.Tensor, titles: Sequence[str], ncols: int = 8, title: str = ""):
    """A grid of grayscale images, each with its caption.

    Args:
        images: (N, H, W) or (N, 1, H, W), any range (each image is scaled to its own min/max).
        titles: N captions.
        ncols: Images per row.
        title: Figure title.

    Returns:
        A matplotlib Figure.
    """
    plt = _pyplot()
    images = images.detach().cpu().float().reshape(len(images), *images.shape[-2:])
    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image.numpy(), cmap="gray")
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
