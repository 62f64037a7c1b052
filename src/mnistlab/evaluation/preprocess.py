"""Any picture brought into its dataset's form: ``style_for(dataset)(gray) -> (image, warning)``.

A digit, a photo included, for MNIST (``mnist_style``); a picture of an object for the other datasets
(``object_style``, Fashion-MNIST's own recipe).

MNIST's digits are white on black, fitted into a 20x20 box keeping their aspect ratio (anti-aliased,
hence grey edges) and placed in a 28x28 field so that their centre of mass sits at its centre.
A photo first needs its paper removed: paper colour and lighting vary across the picture, so the
background is estimated locally (a percentile of each block of about 1/8 of the picture, which the
paper wins wherever the thin strokes do not cover the block, smoothly interpolated), divided out
(lighting multiplies) and the ink separated from the paper by Otsu's threshold. When what remains does
not look like a digit (no contrast, ink everywhere, scattered specks), the image comes with a warning
instead of a guess. numpy and Pillow do it all (scipy or scikit-image would add a dependency for a few
filters). This is the one implementation: ``scripts/predict.py`` and servers use it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

SIZE, BOX = 28, 20
INK = 0.1  # after normalising, pixels above this are ink (for the crop)
WORK = 256  # long side of the working copy of large photos, in pixels
MIN_CONTRAST = 0.15  # ink level above the paper's noise, as a fraction of the paper's brightness
MAX_INK_FRACTION = 0.35  # a digit covers less of the picture than this; texture and noise cover more
MIN_MAIN_SHARE = 0.6  # share of the ink in the largest few connected parts: a digit's ink hangs together
MIN_EXTENT = 4  # pixels the ink must span at least: a lone dot, fitted into 20x20, reaches the model as a solid block
NO_DIGIT = "no digit-like ink found"


def _filter(image: np.ndarray, size: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Separable min or max filter (``reduce``: ``np.min`` or ``np.max``), ``size`` x ``size`` window, edges repeated"""
    pad = size // 2
    out = np.pad(image, pad, mode="edge")
    out = reduce(sliding_window_view(out, size, axis=0), axis=-1)  # (H, W + 2 pad)
    return reduce(sliding_window_view(out, size, axis=1), axis=-1)  # (H, W)


def background(image: np.ndarray, percentile: float) -> np.ndarray:
    """The local background level: a ``percentile`` per block of about 1/8 of the picture, smoothly interpolated.

    A high percentile on light paper (the ink is darker), a low one on a dark ground: the paper wins in
    every block that ink does not cover almost completely. Each block sees only its own pixels, so
    there is no edge effect, and a lighting gradient across the picture is followed block by block.
    """
    h, w = image.shape
    block = max(8, min(h, w) // 8)
    rows, cols = max(1, h // block), max(1, w // block)
    ys, xs = np.linspace(0, h, rows + 1).astype(int), np.linspace(0, w, cols + 1).astype(int)  # block edges
    grid = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            grid[r, c] = np.percentile(image[ys[r] : ys[r + 1], xs[c] : xs[c + 1]], percentile)
    smooth = Image.fromarray(grid.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float64)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` in [0, 1]: the split that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between)
    return float(edges[int(np.argmax(between)) + 1])


def main_region(mask: np.ndarray, keep: int = 3) -> tuple[np.ndarray, float, int]:
    """Where the digit is: the ``keep`` largest 8-connected parts of ``mask``, widened a little.

    Components are found on a copy of at most 64 px (cheap, and it joins strokes broken by noise).

    Returns:
        (H, W) bool, the region (the parts, grown by 2 px of the copy, to keep anti-aliased edges),
        the share of the mask's pixels in those parts, and how many of them stand side by side
        (``side_by_side``): 2 or more for a number of several digits.
    """
    scale = max(1, int(np.ceil(max(mask.shape) / 64)))
    h, w = -(-mask.shape[0] // scale) * scale, -(-mask.shape[1] // scale) * scale
    padded = np.zeros((h, w), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    small = padded.reshape(h // scale, scale, w // scale, scale).any(axis=(1, 3))
    labels = np.where(small, np.arange(1, small.size + 1).reshape(small.shape), 0)
    while True:  # every pixel takes the largest label around it, until each component has one label
        grown = np.where(small, _filter(labels, 3, np.max), 0)
        if np.array_equal(grown, labels):
            break
        labels = grown
    sizes = np.bincount(labels[small], minlength=1)
    biggest = np.argsort(sizes)[::-1][:keep]
    biggest = biggest[sizes[biggest] > 0]
    chosen = np.isin(labels, biggest) & small
    share = float(sizes[biggest].sum() / max(1, small.sum()))
    columns = side_by_side(labels, sizes, biggest)
    chosen = _filter(chosen.astype(np.uint8), 5, np.max).astype(bool)
    region = np.kron(chosen, np.ones((scale, scale), bool))[: mask.shape[0], : mask.shape[1]]
    return region, share, columns


def side_by_side(labels: np.ndarray, sizes: np.ndarray, parts: np.ndarray) -> int:
    """How many columns of ink the ``parts`` (labels, largest first) stand in, counting only digit-sized parts.

    A part counts when it is at least half as tall as all the parts together and holds a fifth of the largest
    one's pixels; parts whose columns overlap (a 5's detached bar above its body) are one. Two or more: several
    digits side by side, which the model would read as one squeezed digit. On MNIST's 10,000 test digits it
    says 2 once (a broken 1), and on 300 pairs of them placed 0-5 pixels apart it says 2 for 297.
    """
    if parts.size < 2:
        return int(parts.size)
    rows = np.nonzero(np.isin(labels, parts))[0]
    height = rows.max() - rows.min() + 1
    spans = []
    for part in parts:
        r, c = np.nonzero(labels == part)
        if np.ptp(r) + 1 >= height / 2 and sizes[part] >= sizes[parts[0]] / 5:
            spans.append((c.min(), c.max()))
    columns, end = 0, -1
    for start, stop in sorted(spans):
        columns += start > end  # a new column of ink begins right of every part before it
        end = max(end, stop)
    return columns


def _working_copy(gray: np.ndarray) -> np.ndarray:
    if max(gray.shape) <= WORK:
        return gray
    scale = WORK / max(gray.shape)
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))


def _border(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame's pixels: (rows, columns, values) of the outermost rows and columns."""
    h, w = image.shape
    mask = np.zeros((h, w), bool)
    mask[[0, -1], :] = mask[:, [0, -1]] = True
    rows, cols = np.nonzero(mask)
    return rows, cols, image[rows, cols]


def ink_image(gray: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The ink of a (H, W) grayscale picture in [0, 1], paper removed: (h, w) in [0, 1], strong ink near 1.

    Returns:
        The ink image (of a working copy at most ``WORK`` pixels long) and a warning when there is
        no digit-like ink in it.
    """
    gray = _working_copy(np.asarray(gray, dtype=np.float64))
    light_paper = float(np.median(_border(gray)[2])) > 0.5
    if light_paper:  # dark ink on paper: lighting multiplies, so divide the paper out
        paper = background(gray, 90)  # the paper's local brightness
        ink = 1 - gray / np.maximum(paper, 1e-3)
    else:  # light ink on a dark ground (MNIST's own files): subtract the ground
        ink = gray - background(gray, 10)
    ink = ink.clip(0, 1)
    if float(ink.max()) <= INK:
        return np.zeros_like(ink), f"{NO_DIGIT} (the image is blank)"
    threshold = otsu(ink)
    mask = ink > threshold
    rest = ink[~mask]
    # The paper's noise floor: median and spread of what is not ink (0 for MNIST's clean black ground).
    floor = float(np.median(rest) + 3 * np.median(np.abs(rest - np.median(rest)))) if rest.size else 0.0
    level = float(np.percentile(ink[mask], 90)) if mask.any() else 0.0
    region, share, columns = main_region(mask)
    warning = None
    if level - floor < MIN_CONTRAST:
        warning = f"{NO_DIGIT} (too little contrast)"
    elif mask.mean() > MAX_INK_FRACTION:
        warning = f"{NO_DIGIT} (ink covers {mask.mean():.0%} of the image: texture or noise)"
    elif share < MIN_MAIN_SHARE:
        warning = f"{NO_DIGIT} (the ink is scattered specks)"
    elif columns > 1:
        warning = f"{columns} digits side by side (a picture holds one digit: crop each into a file of its own)"
    if floor > 0 or level < 0.9:  # noise or weak ink: stretch the ink between the noise floor and its level
        ink = ((ink - floor) / max(level - floor, 1e-6)).clip(0, 1)
    clean = ink * region  # specks away from the digit are paper; an MNIST image passes unchanged
    rows, cols = np.nonzero(clean > INK)
    extent = int(max(np.ptp(rows), np.ptp(cols))) + 1 if rows.size else 0
    if warning is None and extent < MIN_EXTENT:
        warning = f"{NO_DIGIT} (a dot {extent} pixels across, no strokes)"
    return clean, warning


def _fitted(image: np.ndarray, on: np.ndarray, box: int) -> np.ndarray:
    """The part of ``image`` around the ``on`` pixels, resized so that its longer side is ``box``: (h, w) in [0, 1]."""
    rows, cols = np.nonzero(on)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # (h, w) around the ink
    scale = box / max(crop.shape)
    height, width = (max(1, round(n * scale)) for n in crop.shape)
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float64).clip(0, 1)  # (height, width), anti-aliased


def fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """MNIST's crop, fit and centring of an ink image: (28, 28) float32 in [0, 1]."""
    on = ink > INK
    if not on.any():
        return np.zeros((SIZE, SIZE), np.float32)
    patch = _fitted(ink / ink.max(), on, BOX)  # the strongest ink -> 1, as in MNIST
    height, width = patch.shape
    # Integer shift that puts the centre of mass at pixel (14, 14), where MNIST's test digits have theirs.
    mass = patch.sum()
    if mass <= 0:
        return np.zeros((SIZE, SIZE), np.float32)
    cy = (patch.sum(1) * np.arange(height)).sum() / mass
    cx = (patch.sum(0) * np.arange(width)).sum() / mass
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - height))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - width))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + height, left : left + width] = patch
    return out


def mnist_style(gray: np.ndarray) -> tuple[np.ndarray, str | None]:
    """MNIST's recipe for any picture of a digit: white ink on black, cropped, fitted into 20x20, centred in 28x28.

    Args:
        gray: (H, W) grayscale in [0, 1], either polarity (``images.read_gray`` of an image file).

    Returns:
        (28, 28) float32 in [0, 1], a white digit on black (all black when there is no ink), and
        None or a warning saying why the picture does not look like a digit (then the model's
        answer for it is no reading of a digit).
    """
    ink, warning = ink_image(gray)
    return fit_and_centre(ink), warning


def _ground(image: np.ndarray) -> np.ndarray:
    """The ground under an object: a plane fitted to the frame's pixels (tinted paper, a lighting gradient)."""
    rows, cols, values = _border(image)
    design = np.stack([np.ones_like(rows), rows, cols], axis=1).astype(np.float64)  # (P, 3)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return coef[0] + coef[1] * ys + coef[2] * xs  # (H, W)


def object_style(gray: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Fashion-MNIST's recipe for a picture of one object: light on black, cropped, fitted into 28x28, centred.

    A 28x28 picture is taken in the dataset's form, inverted when its ground is light (its object may
    fill the frame, so it is not cropped). A larger one has its ground removed (a plane fitted to the
    frame: tinted paper and a lighting gradient vanish, and the frame's noise sets the floor), is
    cropped to the object (its largest connected parts) and resized so that its longer side is 28
    pixels. None of the digit checks apply: the only warning is for a picture with nothing on it.

    Args:
        gray: (H, W) grayscale in [0, 1].

    Returns:
        (28, 28) float32 in [0, 1], and None or a warning.
    """
    gray = np.asarray(gray, dtype=np.float64)
    light = float(np.median(_border(gray)[2])) > 0.5
    if gray.shape == (SIZE, SIZE):
        return (1 - gray if light else gray).astype(np.float32), None
    gray = _working_copy(gray)
    ground = _ground(gray)
    ink = 1 - gray / np.maximum(ground, 1e-3) if light else gray - ground  # the object light, its ground 0
    floor = float(np.percentile(np.abs(_border(ink)[2]), 99))  # the ground's noise, as the frame shows it
    level = float(ink.max())
    if level - floor < MIN_CONTRAST:
        return np.zeros((SIZE, SIZE), np.float32), "no object found (the image is blank)"
    ink = ((ink - floor) / (level - floor)).clip(0, 1)
    region, _, _ = main_region(ink > INK, keep=1)  # the object; specks of noise around it are ground
    patch = _fitted(ink, region & (ink > INK), SIZE)
    height, width = patch.shape
    out = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - height) // 2, (SIZE - width) // 2
    out[top : top + height, left : left + width] = patch
    return out, None


def style_for(dataset: str | None) -> Callable[[np.ndarray], tuple[np.ndarray, str | None]]:
    """The recipe for pictures given to a model of ``dataset`` (its data module's ``dataset``; None: MNIST).

    ``DatasetSpec.pictures`` says which: a new dataset in ``mnistlab.data.specs`` chooses its own.
    """
    from mnistlab.data.specs import SPECS

    return {"digit": mnist_style, "object": object_style}[SPECS[dataset or "mnist"].pictures]
