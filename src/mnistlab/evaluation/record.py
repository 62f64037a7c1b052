"""What an evaluation records for TensorBoard: what was tested, and the training step it was tested at.

An evaluation (``scripts/evaluate.py``, or the ensemble a ``cv=K`` sweep tests) is a run of its own in
TensorBoard, next to the training runs it tested. Its HParams record carries its members' training
hyperparameters, so the HParams tab compares it with them, and its ``test/*`` scalars sit at the step
its checkpoints were trained to, where the training runs' own ``test/*`` points are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mnistlab.checkpoints import read_checkpoint
from mnistlab.hparams import MAX_HPARAMS, Scalar, read_hparams_file


def training_record(checkpoint: Path) -> dict[str, Scalar]:
    """The HParams record of the run that wrote ``checkpoint`` (``<run>/checkpoints/x.ckpt``); {} when not found.

    A checkpoint copied out of its run folder has no record beside it: its evaluation records what was tested only.
    """
    return read_hparams_file(checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent)


def evaluation_record(paths: Sequence[Path]) -> tuple[dict[str, Scalar], int]:
    """An evaluation's HParams record and the step its scalars are logged at.

    The record leads with ``checkpoint`` (the file name, e.g. ``best.ckpt``; several names are joined) and
    ``members`` (1, or the size of an ensemble), then the settings that all members' training runs
    share; settings they differ in (a fold's ``data.fold`` and ``seed``) would name one member only.

    Returns:
        The record, at most ``MAX_HPARAMS`` entries, and the largest ``global_step`` of the checkpoints.
    """
    names = sorted({path.name for path in paths})
    record: dict[str, Scalar] = {"checkpoint": ",".join(names), "members": len(paths)}
    records = [training_record(path) for path in paths]
    for key, value in records[0].items():
        if all(key in other and other[key] == value for other in records[1:]):
            record.setdefault(key, value)
    step = max(int(read_checkpoint(path).get("global_step", 0)) for path in paths)
    return dict(list(record.items())[:MAX_HPARAMS]), step
