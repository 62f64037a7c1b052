"""Images from outside MNIST: reading image and .npy files, finding them, drawing them in the terminal.

MNIST's preprocessing recipe itself is ``mnistlab.evaluation.preprocess.mnist_style``.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.errors import MnistlabError

# What the reader takes, as every message names it: each format Pillow opens (the common ones first), and .npy.
PILLOW_FORMATS = "PNG, JPEG, GIF, BMP, TIFF, WebP or another format Pillow opens"
FORMATS = f"{PILLOW_FORMATS}, or .npy"
# The first bytes of every .npy file (numpy.lib.format.MAGIC_PREFIX): how a served request's array is told apart.
NPY_MAGIC = b"\x93NUMPY"
# Pillow's modes of 16-bit grayscale (PNG opens as I;16).
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# 32-bit integer and float grayscale (TIFF; an older Pillow's 16-bit PNG): their values say nothing of their range.
WIDE = ("I", "F")


class NotAnImage(MnistlabError):
    """Bytes that PIL does not read as an image."""


def read_gray(path: Path) -> np.ndarray:
    """An image file (``FORMATS``) as a (H, W) float64 grayscale array in [0, 1].

    Transparent pixels count as white paper (``decode_image``). ``.npy`` arrays may be (H, W), (1, H, W) or
    (H, W, 3|4), in [0, 1], 0-255 or 0-65535 (16 bits).
    """
    try:
        if path.suffix.lower() == ".npy":
            return decode_array(path)
        return decode_image(path)
    except NotAnImage:
        raise MnistlabError(f"{path}: not an image (expected {FORMATS})") from None
    except MnistlabError as e:
        raise MnistlabError(f"{path}: {e}") from None


def decode_array(source: Path | IO[bytes]) -> np.ndarray:
    """A ``.npy`` array, a file or a binary stream (a served request), as (H, W) float64 grayscale in [0, 1].

    (H, W), (1, H, W) or (H, W, 3|4) arrays of booleans or real numbers; the range is read from the values.
    """
    try:
        array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise MnistlabError(f"not a readable .npy array ({e})") from None
    if array.dtype != bool and (not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array)):
        raise MnistlabError(f"a .npy image must hold real numbers, not {array.dtype}")
    array = np.squeeze(array).astype(np.float64)  # a bool mask becomes 0 and 1
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(-1)
    if array.ndim != 2 or min(array.shape) < 1:
        raise MnistlabError(f"a .npy image must be a 2-D array, got shape {array.shape}")
    return _by_range(array, "the array")


def decode_image(source: Path | IO[bytes]) -> np.ndarray:
    """An image Pillow opens, a file or a binary stream (a served request), as (H, W) float64 grayscale in [0, 1].

    Turned upright as its EXIF orientation says; transparent pixels count as white paper. Raises ``NotAnImage``
    for anything that is not an image, and ``MnistlabError`` for one of more pixels than PIL decodes (a small
    file can unpack to billions).
    """
    try:
        with Image.open(source) as opened:
            opened.load()
            # A phone saves a photo as its sensor lay, with an EXIF tag that says how to turn it upright, and
            # every viewer turns it: read as stored, the digit the user saw upright reached the model on its side.
            image = ImageOps.exif_transpose(opened)
            if image.mode in SIXTEEN_BIT:
                return _sixteen_bit(image)
            if image.mode in WIDE:  # convert("L") clips at 255: a float image in [0, 1] read as black
                return _by_range(np.asarray(image, dtype=np.float64))
            if "A" in image.getbands() or "transparency" in image.info:
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError):
        raise NotAnImage(f"not an image (expected {FORMATS})") from None
    except Image.DecompressionBombError:
        raise MnistlabError("image too large: too many pixels to decode") from None
    return np.asarray(gray, dtype=np.float64) / 255


def _by_range(values: np.ndarray, what: str = "the image") -> np.ndarray:
    """(H, W) grayscale of unknown range (an array's, a 32-bit TIFF's) -> [0, 1], the range read from its largest
    value: [0, 1], 0-255 or 0-65535 (16-bit data, a scan's, divided by 255 read as a solid block). ``what`` names
    the values in the error for NaN or infinity."""
    if not np.isfinite(values).all():
        raise MnistlabError(f"{what} holds NaN or infinite values")
    full = 65535 if values.max() > 255 else 255 if values.max() > 1 else 1
    return (values / full).clip(0, 1)


def _sixteen_bit(image: Image.Image) -> np.ndarray:
    """A 16-bit grayscale image (a scanner's or a camera's PNG) as (H, W) float64 in [0, 1].

    Pillow's ``convert("L")`` clips these values at 255 instead of scaling them, so every pixel above
    1/256 of full scale read as white: a dark digit on white paper became a blank page, a light one a solid block.
    """
    values = np.asarray(image, dtype=np.float64)
    gray = values / 65535
    if "transparency" in image.info:  # PNG's one transparent grey level: white paper, as for the other modes
        gray[values == image.info["transparency"]] = 1.0
    return gray.clip(0, 1)


def image_files(pattern: str | Path, skipped: list[str] | None = None) -> list[Path]:
    """The image files named by a file, a folder (its files of ``FORMATS``, by their endings) or a glob, sorted.

    A folder's other files, and its links to no file, are left out; with ``skipped`` given, a line saying so is
    appended there.
    """
    path = Path(pattern).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file())
        suffixes = image_suffixes()  # once: it loads Pillow's plugins and builds the set
        files = [p for p in found if p.suffix.lower() in suffixes]
        if not files:
            raise MnistlabError(f"{path}: the folder holds no images ({FORMATS})")
        others = [p.name for p in found if p not in files and not p.name.startswith(".")]  # not .DS_Store
        broken = sorted(p.name for p in path.iterdir() if p.is_symlink() and not p.exists())  # is_file() said no
        for names, what in (
            (others, f"file(s) of {path} that are none of {FORMATS}"),
            (broken, f"link(s) of {path} to no file"),
        ):
            if names and skipped is not None:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                skipped.append(f"{len(names)} {what} ({shown})")
        return files
    if any(c in str(pattern) for c in "*?["):
        anchor = Path(path.anchor or ".")
        files = sorted(p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_file())
        if not files:
            raise MnistlabError(f"image={pattern}: no files match")
        return files
    raise MnistlabError(f"image={pattern}: no such file or folder")


def image_suffixes() -> set[str]:
    """The file endings of a folder's images: those of every format Pillow opens (a single file is tried
    whatever its ending), and ``.npy``."""
    Image.init()  # loads Pillow's format plugins, which register their endings
    return {suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN} | {".npy"}


def render(image: np.ndarray, threshold: float = 0.35) -> str:
    """A framed Unicode picture of a (28, 28) image, two pixel rows per text line (half blocks)."""
    on = np.asarray(image) > threshold  # (28, 28) bool
    blocks = " ▀▄█"
    lines = [
        "".join(blocks[int(t) + 2 * int(b)] for t, b in zip(top, bottom, strict=True))
        for top, bottom in zip(on[0::2], on[1::2], strict=True)
    ]
    width = on.shape[1]
    return "\n".join(["┌" + "─" * width + "┐", *("│" + line + "│" for line in lines), "└" + "─" * width + "┘"])
