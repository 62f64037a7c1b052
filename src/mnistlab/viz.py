"""Figures. matplotlib is imported here only, and only when something is drawn."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix_figure(confmat: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix"):
    """An annotated heatmap in the notebook's look: rows are actual, columns predicted.

    Args:
        confmat: (C, C) counts.
        class_names: C labels for both axes.
        title: Figure title.

    Returns:
        A matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confmat.cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax)
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("Predicted Values")
    ax.set_ylabel("Actual Values")
    ax.set_title(title)
    threshold = counts.max() / 2
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(counts[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if counts[i, j] > threshold else "black",
            )
    fig.tight_layout()
    return fig
