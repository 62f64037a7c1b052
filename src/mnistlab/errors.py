"""The one exception type that entry scripts turn into a single-line message."""

from __future__ import annotations

import errno
from pathlib import Path


class MnistlabError(Exception):
    """A user-facing error: its message is printed alone, without a traceback."""


class DataError(MnistlabError):
    """Missing, corrupt or inconsistent dataset files."""


class ConfigError(MnistlabError, ValueError):
    """A setting outside its allowed range, caught before any work starts."""


class CheckpointNotFoundError(MnistlabError):
    """A checkpoint file or run folder that does not exist, e.g. a distillation teacher not trained yet."""


class NonFiniteLossError(MnistlabError):
    """Training diverged: the loss became NaN or infinite."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (torch's run on), or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Why a file could not be written, when the user can fix it, and what to do about it.
WRITE_FIXES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EACCES: "make the folder writable",
    errno.EPERM: "make the folder writable",
    errno.EROFS: "use a writable folder",
}


class WriteError(MnistlabError):
    """A file the run could not write: a full disk, a quota, a read-only or foreign folder.

    Every writer raises it (``mnistlab.atomic_files``, the TensorBoard and MLflow records): one line
    naming the path and the cause. The writes are atomic, so the last good checkpoint is kept.
    """

    def __init__(self, path: str | Path, error: OSError) -> None:
        fix = WRITE_FIXES.get(error.errno or -1, "fix the cause")
        super().__init__(
            f"cannot write {path}: {error.strerror or error}; the last checkpoint is kept: {fix}, "
            "then continue with resume=RUN_DIR (a sweep: its same command; see docs/errors.md)"
        )
        self.path, self.errno = str(path), error.errno


def is_write_error(error: BaseException) -> bool:
    """Whether ``error`` is an ``OSError`` a user fixes (a full disk, missing permissions), see ``WRITE_FIXES``."""
    return isinstance(error, OSError) and error.errno in WRITE_FIXES
