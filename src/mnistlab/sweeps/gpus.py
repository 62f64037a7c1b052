"""One GPU per parallel worker: each process of a local sweep claims a free GPU slot."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

_held: dict[str, tuple[int, IO]] = {}  # lock folder -> (slot, open lock file) of this process


def visible_gpus() -> list[str]:
    """The GPUs a job may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU ``nvidia-smi -L`` lists.

    Counted without importing torch, which would fix the visible devices of this process.
    """
    if (env := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [d for d in env.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def claim_slot(lock_dir: Path, n_slots: int) -> int | None:
    """Claims the first free slot in ``0..n_slots-1`` for the lifetime of this process.

    A slot is an exclusive ``flock`` on ``lock_dir/slot<k>.lock``; the operating system
    releases it when the process ends, so a crashed worker never keeps a GPU. A process
    keeps the slot it got first (joblib reuses worker processes across jobs).

    Returns:
        The slot, or None when all are held by other processes.
    """
    key = str(lock_dir.resolve())
    if key in _held:
        return _held[key][0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(n_slots):
        f = open(lock_dir / f"slot{slot}.lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        _held[key] = (slot, f)
        return slot
    return None


def release_slots() -> None:
    """Gives back every slot this process holds."""
    for _, f in _held.values():
        f.close()
    _held.clear()
