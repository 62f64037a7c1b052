"""Reading and checking IDX files (the MNIST file format), gzipped or raw.

Written by hand rather than with torchvision's reader so that every malformed file
fails with one sentence naming the file and the fault.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from mnistlab.errors import DataError

# IDX magic: two zero bytes, a type code, then the number of dimensions.
_UBYTE = 0x08
_EXPECTED_NDIM = {"images": 3, "labels": 1}


def read_bytes(path: Path) -> bytes:
    """Returns the uncompressed content of ``path``, un-gzipping when it ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises BadGzipFile (an OSError), EOFError when cut short, zlib.error when corrupt.
        raise DataError(f"{path}: not a readable gzip file ({e})") from None


def md5(data: bytes) -> str:
    """MD5 hex digest of ``data`` (the checksums the MNIST distribution publishes)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_idx(data: bytes, path: Path | str, kind: str) -> torch.Tensor:
    """Parses an unsigned-byte IDX file.

    Args:
        data: The uncompressed file content.
        path: Shown in error messages.
        kind: ``"images"`` (N, H, W) or ``"labels"`` (N,).

    Returns:
        A uint8 tensor of the file's shape.

    Raises:
        DataError: On a bad magic number, wrong rank or a size that disagrees with the header.
    """
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != _UBYTE:
        raise DataError(
            f"{path}: wrong magic number 0x{data[:4].hex()} (expected 0x0000080{_EXPECTED_NDIM[kind]} for {kind})"
        )
    if ndim != _EXPECTED_NDIM[kind]:
        raise DataError(f"{path}: {ndim}-dimensional IDX data, expected {_EXPECTED_NDIM[kind]} for {kind}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, header needs {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "oversized"
        raise DataError(f"{path}: {what} IDX file ({len(data)} bytes, header {shape} needs {expected})")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())
