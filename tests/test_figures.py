"""The pictures a run draws with Pillow: confusion-matrix heatmaps and captioned image grids."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mnistlab.data import FASHION_MNIST
from mnistlab.figures import (
    CELL,
    PIXEL_SCALE,
    blues,
    confusion_matrix_image,
    confusion_matrix_report,
    image_grid,
    png,
)

DIGITS = [str(i) for i in range(10)]
DARKEST = (8, 48, 107)  # the end of ColorBrewer's Blues


def test_heatmap_cells_follow_the_counts() -> None:
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts[3, 3] = 900
    image = confusion_matrix_image(counts, DIGITS, "val confusion matrix")
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 10 * CELL and image.shape[1] > 10 * CELL
    # One cell in the darkest blue (less its digits), none when the matrix is empty.
    darkest = (image == DARKEST).all(-1).sum()
    assert CELL * CELL // 2 < darkest <= CELL * CELL
    empty = confusion_matrix_image(torch.zeros(10, 10, dtype=torch.long), DIGITS)
    assert not (empty == DARKEST).all(-1).any()


def test_palette_runs_from_near_white_to_dark_blue() -> None:
    ends = blues(np.array([0.0, 1.0]))
    assert ends.tolist() == [[247, 251, 255], list(DARKEST)]
    assert (np.diff(blues(np.linspace(0, 1, 50)).astype(int).sum(-1)) <= 0).all()  # darker as values grow


def test_long_class_names_fit() -> None:
    image = confusion_matrix_image(torch.eye(10, dtype=torch.long) * 100, FASHION_MNIST.classes)
    digits = confusion_matrix_image(torch.eye(10, dtype=torch.long) * 100, DIGITS)
    assert image.shape[0] > 10 * CELL + 60  # room below the matrix for the sideways labels
    assert image.shape[1] > digits.shape[1] + 40  # and left of it for the row labels


def test_report_shows_counts_and_row_fractions_side_by_side() -> None:
    counts = torch.diag(torch.arange(1, 11)) * 10  # class k: 10k samples, all right
    counts[0, 1] = 990  # class 0: 10 right, 990 wrong, so its diagonal fraction is 0.01
    figure = confusion_matrix_report(counts, DIGITS, "Test confusion matrix")
    image = np.asarray(Image.open(io.BytesIO(png(figure))).convert("RGB"))
    half = image.shape[1] // 2
    left, right = image[:, :half], image[:, half:]
    # Counts: the 990 cell is the darkest; fractions: every diagonal cell but row 0 is 1.0, the darkest.
    assert CELL * CELL // 2 < (left == DARKEST).all(-1).sum() <= CELL * CELL
    assert 9 * CELL * CELL // 2 < (right == DARKEST).all(-1).sum() <= 10 * CELL * CELL


def test_image_grid_places_each_image_and_makes_room_for_captions() -> None:
    images = torch.zeros(10, 1, 28, 28)
    images[:, :, 10:18, 10:18] = 1.0  # a white 8x8 square on black in every image
    grid = image_grid(images, [""] * 10, ncols=4)
    assert grid.dtype.name == "uint8" and grid.shape[2] == 3
    tile = 28 * PIXEL_SCALE
    assert 4 * tile < grid.shape[1] < 5 * tile and 3 * tile < grid.shape[0] < 4 * tile + 80  # 4 columns, 3 rows
    black = (grid == 0).all(-1).sum()
    assert black == 10 * (tile * tile - (8 * PIXEL_SCALE) ** 2)  # ten tiles, each with its white square
    captioned = image_grid(images, [f"true {k}\n99.0%" for k in range(10)], ncols=4, title="Most confident mistakes")
    assert captioned.shape[0] > grid.shape[0] + 3 * 13 and captioned.shape[1] == grid.shape[1]


def test_image_grid_cells_are_as_wide_as_their_longest_caption_line() -> None:
    """Before: cells were a tile wide whatever the caption, and Fashion-MNIST's ran into each other."""
    captions = ["true T-shirt/top\npred Ankle boot (99.2%)"] * 8
    grid = image_grid(torch.zeros(8, 28, 28), captions, ncols=8)
    assert grid.shape[1] > 8 * (28 * PIXEL_SCALE + 12) + 8  # wider than tiles alone
    # Each caption's ink stays within its own cell: the gaps between neighbours' lines are white columns.
    caption_rows = grid[28 * PIXEL_SCALE + 10 :]
    ink_columns = (caption_rows < 128).any(-1).any(0)  # (W,)
    starts = np.flatnonzero(np.diff(ink_columns.astype(int)) == 1)
    assert len(starts) >= 8  # at least one run of ink per caption, none merged with the next


def test_a_strip_chart_wraps_a_long_note_instead_of_cutting_it_at_the_edges() -> None:
    """Before: a sweep's shared overrides ran off both sides of summary.png in one line."""
    from mnistlab.figures import strip_chart

    note = "every job: " + " ".join(f"callbacks.model_checkpoint.setting_{i}=val/loss" for i in range(8))
    rows = [("optimizer.lr=0.01", [0.4, 0.45]), ("optimizer.lr=0.1", [1.2])]
    short = np.asarray(strip_chart(rows, "val/loss_best", "title", "every job: seed=1"))
    chart = np.asarray(strip_chart(rows, "val/loss_best", "title", note))  # (H, W, 3)
    assert chart.shape[1] == short.shape[1] and chart.shape[0] > short.shape[0] + 3 * 13  # more lines, same width
    inked = np.flatnonzero((chart < 200).any(axis=(0, 2)))  # columns holding any text or drawing
    assert inked.min() > 5 and inked.max() < chart.shape[1] - 6  # nothing runs into the image's edges


def test_a_strip_chart_shows_the_end_of_a_long_row_label() -> None:
    """Before: labels were cut at 60 characters ("... optimizer.weight_dec..."), so an Optuna search's rows,
    which differ in model.hidden_units and data.batch_size at their ends, read the same."""
    from mnistlab.figures import strip_chart

    head = "optimizer=adamw optimizer.lr=0.01207 optimizer.weight_decay=0.000123"
    first = [(f"{head} model.hidden_units=64 data.batch_size=32", [0.9]), (f"{head} model.hidden_units=64", [0.8])]
    other = [first[0], (f"{head} model.hidden_units=99", [0.8])]  # differs from first only after 80 characters
    a, b = np.asarray(strip_chart(first, "val/acc_best", "t")), np.asarray(strip_chart(other, "val/acc_best", "t"))
    assert a.shape == b.shape and (a != b).any()  # the second row's label is drawn to its end
    inked = np.flatnonzero((a < 200).any(axis=(0, 2)))
    assert inked.min() > 5 and inked.max() < a.shape[1] - 6
