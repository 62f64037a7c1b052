"""What entry scripts share: turning user errors into one line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from mnistlab.errors import MnistlabError

EXIT_USER_ERROR = 2


def user_error(exc: BaseException) -> BaseException | None:
    """The MnistlabError or ValueError behind ``exc`` (configs wrap them), else None."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (MnistlabError, ValueError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Prints ``error: <message>`` instead of a traceback for errors the user can fix."""
    try:
        yield
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
