"""Checkpoint files: written atomically, read without unpickling any code."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mnistlab.atomic_files import write_atomic
from mnistlab.errors import CheckpointNotFoundError, MnistlabError
from mnistlab.systems import Classifier

# Which model files the scripts take, for messages about the wrong kind of file.
ACCEPTED = (
    "train.py, evaluate.py and export.py take a training checkpoint (.ckpt) or a run folder; "
    "predict.py and serve.py also take an ONNX model written by export.py (model.onnx)"
)


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``, e.g. ``export.py format=torchscript``), not a checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def saved_by_torch(path: Path) -> bool:
    """A zip archive (``torch.save``'s format) or a bare pickle (its legacy one: the PROTO opcode first)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as f:
        return f.read(1) == b"\x80"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for missing, unsafe, wrong or damaged files.

    torch reads a checkpoint's zip archive without checking its CRCs, so a damaged file would load
    (changed weights, a lower accuracy and no word of it): the CRCs are checked here, and weights
    that are NaN or infinite (a damaged or hand-made file: training never saves them) are refused too.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if is_torchscript(path):
        raise MnistlabError(f"{path} is a TorchScript model (load it with torch.jit.load); {ACCEPTED}")
    if path.suffix.lower() == ".onnx":  # protobuf, no pickle: torch's reason would say nothing of it
        raise MnistlabError(f"{path} is an ONNX model, not a training checkpoint; {ACCEPTED}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the first object it refused to unpickle, e.g. "GLOBAL posix.system".
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None and not saved_by_torch(path):  # a log, a picture: no pickle at all
            raise MnistlabError(f"{path}: not a readable checkpoint (no file of torch.save); {ACCEPTED}") from None
        what = f"it holds a pickled {found.group(1)}" if found else "it holds pickled objects"
        raise MnistlabError(
            f"{path}: refused, {what}; mnistlab loads only tensors and plain values (torch.load weights_only=True)"
        ) from None
    except Exception as e:  # torch.load fails on foreign files with anything from KeyError to RuntimeError
        if _cut_short(path):  # torch's own reason is an errno ("Invalid argument"), which says nothing
            raise MnistlabError(
                f"{path}: the file is cut short or damaged: {path.stat().st_size} bytes of a zip archive (torch.save's "
                "format) without the directory that ends a complete one; use another checkpoint"
            ) from None
        # Only torch's first sentence: the rest may advise weights_only=False, which would run the file's code.
        reason = re.split(r"(?<=[.!?])\s", str(e).strip(), maxsplit=1)[0] if str(e).strip() else ""
        if "weights_only" in reason or len(reason) > 120 or not reason or isinstance(e, LookupError):
            reason = type(e).__name__
        raise MnistlabError(f"{path}: not a readable checkpoint ({reason}); {ACCEPTED}") from None
    if (damaged := _failed_crc(path)) is not None:
        raise MnistlabError(f"{path}: the file is damaged ({damaged} fails its CRC check); use another checkpoint")
    if not isinstance(ckpt, dict):  # torch.save of a tensor or a list, say
        raise MnistlabError(f"{path}: not a training checkpoint (torch.save of a {type(ckpt).__name__}); {ACCEPTED}")
    weights = ckpt.get("state_dict")
    for name, tensor in (weights or {}).items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MnistlabError(f"{path}: the weights hold NaN or infinite values ({name}); use another checkpoint")
    return ckpt


def _cut_short(path: Path) -> bool:
    """A zip archive that lost its end (a full disk, a killed copy): its start, without the directory that ends it."""
    with path.open("rb") as f:
        start = f.read(4)
    return start == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def _failed_crc(path: Path) -> str | None:
    """The first member of a checkpoint's zip archive whose data does not match its CRC, else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError):  # torch.load read it, so not a zip archive: torch's legacy format
        return None


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


def load_system(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """``Classifier.load_from_checkpoint`` for the scripts: one-line errors, and the data module's saved settings.

    The one way a system is rebuilt from a checkpoint is Lightning's ``Classifier.load_from_checkpoint``
    (``weights_only=True``), whose records rebuild the network by calling the ``torch.nn.Module``
    subclass they name and nothing else (see ``mnistlab.checkpoint_records``). This reads the file
    first with ``read_checkpoint``, so that a missing, unsafe or foreign file, and a record refused on
    rebuilding, end in one line that names the file.

    Returns:
        The system in eval mode on the CPU, and the ``MNISTDataModule`` arguments the run
        used (empty for checkpoints that did not save them).
    """
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams.get("net"), dict):
        raise MnistlabError(f"{path}: not an mnistlab checkpoint (no network record)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise MnistlabError(f"{path}: not a complete checkpoint (no state_dict: the weights are missing)")
    try:
        system = Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except MnistlabError as e:
        raise MnistlabError(f"{path}: {e}") from None
    except RuntimeError as e:  # e.g. a record whose arguments do not match the saved weights
        raise MnistlabError(f"{path}: the weights do not fit the network its record builds ({_misfit(e)})") from None
    # In float32, as the scripts feed their images: a network built in float64 (trained under trainer.precision=64,
    # which casts it) came back as its own code builds it, and failed on the first image (mat1 and mat2 dtypes). A
    # float32 network trained so was already loaded into float32 weights; a Trainer's precision casts it again.
    system.net.float()
    return system.eval(), dict(ckpt.get("datamodule_hyper_parameters") or {})


def _misfit(error: RuntimeError) -> str:
    """The first concrete reason of torch's ``load_state_dict`` error (its first line is a heading only).

    A list of keys is cut to its first three, so that the message stays one readable line.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict") else lines[0]
    head, sep, keys = reason.partition(": ")
    names = keys.rstrip(". ").split(", ")
    if sep and "key(s)" in head and len(names) > 3:
        reason = f"{head}: {', '.join(names[:3])} and {len(names) - 3} more"
    return reason.rstrip(".")
