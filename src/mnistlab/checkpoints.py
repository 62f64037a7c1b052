"""Checkpoint files: written atomically, read without unpickling any code."""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mnistlab.atomic_files import write_atomic
from mnistlab.config_keys import shell_path_override
from mnistlab.errors import CheckpointNotFoundError, MnistlabError
from mnistlab.resume.sweep import is_run_folder as _is_run_folder
from mnistlab.resume.sweep import is_sweep_folder, missing_folds, sweep_exclude_keys, sweep_members, unfinished_jobs
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


def find_checkpoint(
    path: str | Path,
    prefer: tuple[str, ...] = ("best.ckpt", "last.ckpt"),
    announce: bool = True,
    setting: str = "ckpt_path",
) -> Path:
    """The checkpoint file meant by ``ckpt_path``: the file itself, or the preferred checkpoint of a run folder.

    A run folder (or its ``checkpoints/`` folder) stands for its first existing checkpoint in
    ``prefer``; the choice is printed (unless ``announce`` is off), so the user knows which one ran.

    Raises:
        MnistlabError: When the path does not exist, or the folder holds none of ``prefer``.
    """
    if isinstance(path, str) and not path.strip():  # an unset shell variable: Path('') is the working folder
        raise MnistlabError(
            f"{setting}={path!r} names no checkpoint: give a .ckpt file or a run folder (. for this one)"
        )
    path = Path(path).expanduser()
    if not path.is_dir():
        if not path.is_file():
            raise CheckpointNotFoundError(f"checkpoint not found: {path}")
        return path
    for name in prefer:
        for candidate in (path / "checkpoints" / name, path / name):
            if candidate.is_file():
                if announce:
                    print(f"{setting}={path} is a folder: using {candidate}", file=sys.stderr)
                return candidate
    raise MnistlabError(f"{setting}={path} is a folder without {' or '.join(prefer)} (in it or in checkpoints/)")


def _tested_ensemble(folder: Path, setting: str) -> list[Path] | None:
    """The members of an ensemble a ``cv=K`` sweep tested (``<sweep>/ensembles/<n>/``); None for another folder.

    One configuration's folds, where the sweep folder itself stands for every finished job (a grid x folds).
    """
    from mnistlab.sweeps.folds import ENSEMBLE_FILE  # a light module; the sweeps package builds on this one

    record = folder / ENSEMBLE_FILE
    if not record.is_file():
        return None
    try:
        named = json.loads(record.read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MnistlabError(f"{setting}={folder}: {ENSEMBLE_FILE} cannot be read ({type(e).__name__})") from None
    found = [folder.parent.parent / name for name in named]  # relative to the sweep folder
    if missing := [str(p) for p in found if not p.is_file()]:
        raise MnistlabError(f"{setting}={folder}: the ensemble's members are gone: {', '.join(missing)}")
    print(f"{setting}={folder} is the ensemble of {len(found)} fold models that its sweep tested", file=sys.stderr)
    return found


def _refuse_a_member_twice(found: list[tuple[str | Path, Path]], setting: str) -> None:
    """Refuses, naming both spellings, a list's ``(item, checkpoint it means)`` pairs that hold one member twice.

    One checkpoint twice, or one run twice where a folder stands for one of its checkpoints and the list names
    another (``[<run>/checkpoints/last.ckpt,<run>]``, the folder meaning ``best.ckpt``): it would weigh twice in
    the mean. Two files of one run, each named, are the user's choice (a snapshot ensemble).
    """
    seen: dict[Path, tuple[str, bool]] = {}  # a checkpoint, and its run, -> how the list named it, by a folder?
    for item, file in found:
        named = str(item) if Path(item).expanduser() == file else f"{item} ({file})"
        by_folder = Path(item).expanduser().is_dir()
        run = file.parent.parent if file.parent.name == "checkpoints" else file.parent  # as find_checkpoint looks
        if (earlier := seen.get(file.resolve())) is not None:
            again = f"{item} twice" if earlier[0] == named else f"one checkpoint twice, as {earlier[0]} and as {named}"
            raise MnistlabError(f"{setting} names {again}: each member of an ensemble counts once; give it once")
        if (other := seen.get(run.resolve())) is not None and (by_folder or other[1]):
            raise MnistlabError(
                f"{setting} names the run {run} twice, as {other[0]} and as {named}: "
                "a run counts once in an ensemble; give it once"
            )
        seen.setdefault(run.resolve(), (named, by_folder))
        seen[file.resolve()] = (named, by_folder)


def find_checkpoints(path: str | Path | Sequence[str | Path], setting: str = "ckpt_path") -> list[Path]:
    """The checkpoint files ``ckpt_path`` means: one for a file or a run folder, several for an ensemble.

    An ensemble is a sweep folder (every finished job's checkpoint, e.g. the K folds of ``cv=K``), the
    folder of an ensemble a ``cv=K`` sweep tested (``<sweep>/ensembles/<n>``: that configuration's folds), or
    a list of checkpoint files and run folders (``ckpt_path=[a,b,c]``).

    Raises:
        MnistlabError: When a path does not exist, or a folder holds no checkpoint and no finished job.
    """
    if not isinstance(path, (str, Path)):
        if isinstance(path, Mapping) or not isinstance(path, Sequence):  # {a: 1} would read as its keys
            raise MnistlabError(f"{setting}={path} is not a path: give a .ckpt file, a run or sweep folder, or a list")
        found = [(item, f) for item in path for f in find_checkpoints(item, setting)]
        if not found:
            raise MnistlabError(f"{setting}=[] names no checkpoint")
        _refuse_a_member_twice(found, setting)
        return [f for _, f in found]
    folder = Path(path).expanduser()
    if not folder.is_dir() or _is_run_folder(folder) or not str(path).strip():  # '': find_checkpoint refuses it
        return [find_checkpoint(path, setting=setting)]
    if (tested := _tested_ensemble(folder, setting)) is not None:
        return tested
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and _is_run_folder(p))
    if runs and not is_sweep_folder(folder):  # e.g. outputs/<date>: that day's runs, of any models, are no one model
        shown = ",".join(str(run) for run in runs[:2]) + (",..." if runs[2:] else "")
        raise MnistlabError(
            f"{setting}={folder} is no sweep folder (no multirun.yaml) but holds {len(runs)} "
            f"run{'s' * (len(runs) != 1)}: give one run folder, e.g. {setting}={runs[0]}, or list the runs "
            f"to average them as one ensemble, {setting}=[{shown}]"
        )
    members, unfinished = sweep_members(folder), unfinished_jobs(folder)
    numbers = ", ".join(job.name.split("_", 1)[0] for job in unfinished)
    finish = f"(the sweep's own command plus {shell_path_override('hydra.sweep.dir', folder)} finishes it)"
    if not members and unfinished:  # its only checkpoints are half-trained: say whose, and what finishes them
        several = len(unfinished) > 1
        raise MnistlabError(
            f"{setting}={folder} is a sweep folder without finished jobs: job{'s' * several} {numbers} "
            f"{'are' if several else 'is'} still running or {'were' if several else 'was'} interrupted {finish}"
        )
    if not members:
        raise MnistlabError(
            f"{setting}={folder} is a folder without best.ckpt or last.ckpt (in it or in checkpoints/) "
            "and without finished sweep jobs"
        )
    found = [find_checkpoint(job, announce=False) for job in members]
    names = ", ".join(sorted({f.name for f in found}))
    grid = sorted(folder.glob("ensembles/*/ensemble.json"))  # a grid x folds: not one configuration's folds
    mixed = f"; its {len(grid)} configurations together, one is e.g. {setting}={grid[0].parent}" if grid[1:] else ""
    print(
        f"{setting}={folder} is a sweep: an ensemble of its {len(found)} finished jobs ({names}){mixed}",
        file=sys.stderr,
    )
    if unfinished:  # half-trained: their checkpoints would weigh in unnoticed
        print(f"{setting}={folder}: left out job {numbers}, still running or interrupted {finish}", file=sys.stderr)
    if lacking := missing_folds(
        members, sweep_exclude_keys(folder)
    ):  # a cross-validation short of a fold is no full one; say which
        more = f"; and {len(lacking) - 3} more configurations" if lacking[3:] else ""  # e.g. pruned Optuna trials
        print(
            f"{setting}={folder}: its finished jobs lack {'; '.join(lacking[:3])}{more} "
            "(failed, pruned, interrupted or still to run)",
            file=sys.stderr,
        )
    return found


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
