"""Checkpoint files: written atomically, read without unpickling any code."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mnistlab.errors import MnistlabError
from mnistlab.io import write_atomic
from mnistlab.systems import Classifier


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise MnistlabError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the first object it refused to unpickle, e.g. "GLOBAL posix.system".
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it holds a pickled {found.group(1)}" if found else "it holds pickled objects"
        raise MnistlabError(
            f"{path}: refused, {what}; mnistlab loads only tensors and plain values (torch.load weights_only=True)"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise MnistlabError(f"{path}: not a readable checkpoint ({e})") from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, made crash-safe and code-free.

    Saving goes through a temp file and a rename, so a process killed at any moment
    leaves the previous ``last.ckpt`` intact instead of a half-written one. Loading (for
    ``trainer.fit(ckpt_path=...)``, resume and ``trainer.test(ckpt_path=...)``) uses
    ``read_checkpoint``, i.e. ``torch.load(weights_only=True)``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()  # MNIST checkpoints are a few MB: build in memory, then one atomic write
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)


def resume_files(run_dir: str | Path) -> tuple[Path, Path]:
    """The saved config and ``last.ckpt`` of an interrupted run folder.

    Raises:
        MnistlabError: When ``run_dir`` is not a run folder or holds no ``last.ckpt`` yet.
    """
    run = Path(run_dir).expanduser().resolve()
    config, last = run / ".hydra" / "config.yaml", run / "checkpoints" / "last.ckpt"
    if not config.is_file():
        raise MnistlabError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml)")
    if not last.is_file():
        raise MnistlabError(f"resume={run_dir}: nothing to resume, no checkpoints/last.ckpt was saved yet")
    return config, last


def load_system(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuilds the trained system and returns it with the data module's saved settings.

    The network is rebuilt from the checkpoint's record alone, by calling the
    ``torch.nn.Module`` subclass it names and nothing else (see ``mnistlab.records``).

    Returns:
        The system in eval mode on the CPU, and the ``MNISTDataModule`` arguments the run
        used (empty for checkpoints that did not save them).
    """
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams.get("net"), dict):
        raise MnistlabError(f"{path}: not an mnistlab checkpoint (no network record)")
    try:
        system = Classifier(
            net=hparams["net"],
            label_smoothing=hparams.get("label_smoothing", 0.0),
            class_names=hparams.get("class_names"),
            head=hparams.get("head", "softmax"),
        )
    except MnistlabError as e:
        raise MnistlabError(f"{path}: {e}") from None
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:  # e.g. a record whose arguments do not match the saved weights
        first = str(e).strip().splitlines()[0]
        raise MnistlabError(f"{path}: the weights do not fit the network its record builds ({first})") from None
    return system.eval(), dict(ckpt.get("datamodule_hyper_parameters") or {})
