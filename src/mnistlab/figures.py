"""Every picture a run or a sweep draws, with Pillow: confusion-matrix heatmaps, captioned image grids and
a sweep's strip chart.

matplotlib needed about 0.4 s to lay out the test report's two-panel confusion matrix and
0.75 s for each image grid on a 2-core CPU, some 2 s of a 20 s notebook run; Pillow draws each
in a few milliseconds, so validation can draw its matrix every epoch. Cells are coloured
with ColorBrewer's "Blues", the palette of the notebook's heatmap.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

CELL = 40  # pixels per matrix cell
FONT_SIZE = 13
PIXEL_SCALE = 3  # a 28x28 digit is drawn as 84x84 in grids
STRIP_WIDTH, STRIP_ROW = 480, 26  # a strip chart's axis and row heights, in pixels
MAX_LABEL = 60  # characters of a strip chart's row label before it wraps onto another line
# ColorBrewer's 9-class "Blues", light to dark; matplotlib's "Blues" interpolates the same colours.
BLUES = np.array(
    [
        (247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
        (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107),
    ],
    dtype=np.float64,
)  # fmt: skip


def _font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def blues(fraction: np.ndarray) -> np.ndarray:
    """Colours for values in [0, 1]: (...) floats -> (..., 3) uint8."""
    stops = np.linspace(0, 1, len(BLUES))
    channels = [np.interp(np.clip(fraction, 0, 1), stops, BLUES[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, -1)).astype(np.uint8)


def _sideways(
    text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, anchor: str = "rm"
) -> Image.Image:
    """``text`` on a white strip ``width`` long, turned 90 degrees (reads bottom to top)."""
    strip = Image.new("RGB", (width, FONT_SIZE + 4), "white")
    x = {"r": width - 2, "m": width // 2}[anchor[0]]
    ImageDraw.Draw(strip).text((x, (FONT_SIZE + 4) // 2), text, fill="black", font=font, anchor=anchor)
    return strip.rotate(90, expand=True)


def heatmap(values: np.ndarray, texts: Sequence[Sequence[str]], class_names: Sequence[str], title: str) -> Image.Image:
    """One annotated panel, rows actual and columns predicted.

    Args:
        values: (C, C) non-negative numbers that colour the cells (scaled by their maximum).
        texts: C rows of C cell captions.
        class_names: C labels for both axes; long ones are drawn sideways under the columns.
        title: Text above the matrix.
    """
    font = _font()
    n = len(class_names)
    label_w = int(max(font.getlength(name) for name in class_names)) + 8
    left, top = label_w + FONT_SIZE + 12, 2 * FONT_SIZE + 14
    width, height = left + n * CELL + 10, top + n * CELL + label_w + FONT_SIZE + 14
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    # Cells: one (C, C) colour array scaled up, rather than C*C rectangles.
    peak = float(values.max()) if values.size else 0.0
    colours = blues(values / peak if peak > 0 else np.zeros_like(values, dtype=np.float64))  # (C, C, 3)
    img.paste(Image.fromarray(colours).resize((n * CELL, n * CELL), Image.NEAREST), (left, top))
    for i in range(n):
        for j in range(n):
            colour = "white" if peak > 0 and values[i, j] > peak / 2 else "black"
            centre = (left + j * CELL + CELL // 2, top + i * CELL + CELL // 2)
            draw.text(centre, texts[i][j], fill=colour, font=font, anchor="mm")
    draw.text((width // 2, 6), title, fill="black", font=font, anchor="mt")
    for k, name in enumerate(class_names):
        draw.text((left - 6, top + k * CELL + CELL // 2), name, fill="black", font=font, anchor="rm")
        img.paste(_sideways(name, label_w, font), (left + k * CELL + (CELL - FONT_SIZE - 4) // 2, top + n * CELL + 4))
    draw.text((left + n * CELL // 2, height - 6), "Predicted Values", fill="black", font=font, anchor="mb")
    img.paste(_sideways("Actual Values", n * CELL, font, anchor="mm"), (4, top))
    return img


def _counts_panel(counts: np.ndarray, class_names: Sequence[str], title: str) -> Image.Image:
    """The heatmap of (C, C) counts, each cell captioned with its count."""
    return heatmap(counts, [[str(int(v)) for v in row] for row in counts], class_names, title)


def confusion_matrix_image(
    confmat: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix"
) -> np.ndarray:
    """The counts heatmap that TensorBoard shows per stage: (C, C) counts -> (H, W, 3) uint8 RGB."""
    return np.asarray(_counts_panel(confmat.detach().cpu().numpy(), class_names, title))


def confusion_matrix_report(
    confmat: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix"
) -> Image.Image:
    """The report's figure: the counts and the row-normalised matrix side by side.

    Each row of the right panel is that class's samples as fractions, so its diagonal is the
    per-class recall.
    """
    counts = confmat.detach().cpu().double().numpy()
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # (C, C), each row sums to 1
    panels = [
        _counts_panel(counts, class_names, "Counts"),
        heatmap(rows, [[f"{v:.2f}" for v in row] for row in rows], class_names, "Normalised by row (actual class)"),
    ]
    head = 2 * FONT_SIZE + 8
    fig = Image.new("RGB", (sum(p.width for p in panels) + 20, head + max(p.height for p in panels)), "white")
    ImageDraw.Draw(fig).text((fig.width // 2, 8), title, fill="black", font=_font(FONT_SIZE + 3), anchor="mt")
    fig.paste(panels[0], (0, head))
    fig.paste(panels[1], (panels[0].width + 20, head))
    return fig


def image_grid(images: torch.Tensor, captions: Sequence[str], ncols: int = 8, title: str = "") -> np.ndarray:
    """Grayscale images in a grid, each with a caption of one or more lines under it.

    Args:
        images: (N, H, W) or (N, 1, H, W), any range (each image is scaled to its own min/max).
        captions: N captions; "\\n" starts a new line.
        ncols: Images per row.
        title: Text above the grid.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    font = _font(11)
    x = images.detach().cpu().float().reshape(len(images), *images.shape[-2:])  # (N, H, W)
    low = x.amin((1, 2), keepdim=True)
    span = (x.amax((1, 2), keepdim=True) - low).clamp_min(1e-12)
    pixels = ((x - low) / span * 255).round().to(torch.uint8).numpy()  # (N, H, W), black background
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    tile_w, tile_h = pixels.shape[2] * PIXEL_SCALE, pixels.shape[1] * PIXEL_SCALE
    # As wide as the longest caption line: Fashion-MNIST's "true T-shirt/top pred Ankle boot" ran into its neighbours.
    text_w = max((font.getlength(line) for c in captions for line in c.split("\n")), default=0)
    cell_w, cell_h = max(tile_w, int(text_w)) + 12, tile_h + 6 + 13 * lines + 6
    top = 2 * FONT_SIZE + 8 if title else 4
    nrows = max(1, -(-len(pixels) // ncols))
    grid = Image.new("RGB", (ncols * cell_w + 8, top + nrows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((grid.width // 2, 8), title, fill="black", font=_font(FONT_SIZE + 2), anchor="mt")
    for k, (image, caption) in enumerate(zip(pixels, captions, strict=False)):
        x0, y0 = 4 + (k % ncols) * cell_w + (cell_w - tile_w) // 2, top + (k // ncols) * cell_h
        tile = Image.fromarray(image, "L").resize((tile_w, tile_h), Image.NEAREST)
        grid.paste(tile.convert("RGB"), (x0, y0))
        for i, line in enumerate(caption.split("\n")):
            draw.text((x0 + tile_w // 2, y0 + tile_h + 4 + 13 * i), line, fill="black", font=font, anchor="mt")
    return np.asarray(grid)


def png(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _ticks(lo: float, hi: float) -> tuple[list[float], int]:
    """About five round values in [lo, hi], and the decimals that tell them apart."""
    raw = (hi - lo) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step)
    return [k * step for k in range(first, math.floor(hi / step) + 1)], max(0, -math.floor(math.log10(step)))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """``text`` in lines of at most ``width`` pixels, broken at spaces (a longer word keeps a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def strip_chart(rows: Sequence[tuple[str, Sequence[float]]], metric: str, title: str, note: str = "") -> Image.Image:
    """One row per configuration: a dot for each of its jobs' ``metric`` and a bar at their mean, on one axis.

    A sweep's spread reads at a glance here: how far seeds or folds scatter, and whether two configurations'
    dots overlap.

    Args:
        rows: (label, values) per configuration, drawn top to bottom; each holds one value or more. A label
            longer than ``MAX_LABEL`` characters wraps at its spaces onto more lines.
        metric: The axis's caption.
        title: Text above the chart.
        note: A second line under the title (what every row shares, say).
    """
    font = _font()
    values = [v for _, vs in rows for v in vs]
    pad = max((max(values) - min(values)) * 0.08, 5e-4)
    lo, hi = min(values) - pad, max(values) + pad
    # Wrapped, not cut: an Optuna trial's label runs long, and its last overrides may be what tells rows apart.
    labels = [_wrap(label, font, font.getlength("x" * MAX_LABEL)) or [""] for label, _ in rows]
    left = int(max(font.getlength(line) for lines in labels for line in lines)) + 20
    line_h = FONT_SIZE + 4
    row_h = STRIP_ROW + (max(len(lines) for lines in labels) - 1) * line_h
    width = left + STRIP_WIDTH + 30
    # A sweep's shared overrides run long: wrapped to the chart's width, not cut at the image's edges.
    heading = [(line, "black") for line in _wrap(title, font, width - 20)]
    heading += [(line, (90, 90, 90)) for line in _wrap(note, font, width - 20)]
    top = (len(heading) + 1) * (FONT_SIZE + 4) + 6
    bottom = top + len(rows) * row_h
    img = Image.new("RGB", (width, bottom + 2 * FONT_SIZE + 16), "white")
    draw = ImageDraw.Draw(img)

    def x(value: float) -> int:
        return left + round((value - lo) / (hi - lo) * STRIP_WIDTH)

    ticks, decimals = _ticks(lo, hi)
    for tick in ticks:
        draw.line([(x(tick), top), (x(tick), bottom)], fill=(225, 225, 225))
        draw.text((x(tick), bottom + 4), f"{tick:.{decimals}f}", fill="black", font=font, anchor="mt")
    for i, (lines, (_, vs)) in enumerate(zip(labels, rows, strict=True)):
        y = top + i * row_h + row_h // 2
        for k, line in enumerate(lines):  # centred on the row's dots
            line_y = y + round((k - (len(lines) - 1) / 2) * line_h)
            draw.text((left - 10, line_y), line, fill="black", font=font, anchor="rm")
        mean = x(statistics.fmean(vs))
        draw.line([(mean, y - 10), (mean, y + 10)], fill=tuple(BLUES[8].astype(int)), width=3)
        for v in vs:
            draw.ellipse([x(v) - 4, y - 4, x(v) + 4, y + 4], fill=tuple(BLUES[6].astype(int)))
    draw.rectangle([left, top, left + STRIP_WIDTH, bottom], outline="black")
    for i, (line, colour) in enumerate(heading):
        draw.text((img.width // 2, 6 + i * (FONT_SIZE + 4)), line, fill=colour, font=font, anchor="mt")
    draw.text((left + STRIP_WIDTH // 2, img.height - 4), metric, fill="black", font=font, anchor="mb")
    return img
