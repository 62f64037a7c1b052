"""Small file helpers: writes that never leave a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mnistlab.errors import WriteError, is_write_error


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path``, then renames it over ``path``.

    Raises:
        WriteError: The disk is full, or the folder is not writable: one line naming ``path``;
            ``path`` itself is left as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (WriteError(path, e) if is_write_error(e) else e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_write_error(e):
            raise WriteError(path, e) from e
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically writes ``obj`` as indented JSON."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_metrics(folder: Path, metrics: dict[str, float]) -> None:
    """Writes ``folder/metrics.json``, the one record a run's readers use (sweep summary, Optuna, MLflow).

    The only writer of that file: ``training.fit_and_test`` calls it once per run, ``evaluate``
    once per evaluation.
    """
    write_json(folder / "metrics.json", metrics)
