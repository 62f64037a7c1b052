"""Loading a trained system from a checkpoint alone, without unpickling any code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from mnistlab.errors import MnistlabError
from mnistlab.models import MLP
from mnistlab.systems import Classifier


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise MnistlabError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise MnistlabError(f"{path}: refused, it is not a plain-tensor checkpoint ({first})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise MnistlabError(f"{path}: not a readable checkpoint ({e})") from None


def load_system(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuilds the trained system and returns it with the data module's saved settings.

    Returns:
        The system in eval mode on the CPU, and the ``MNISTDataModule`` arguments the run
        used (empty for checkpoints that did not save them).
    """
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    if "net" not in hparams:
        raise MnistlabError(f"{path}: not an mnistlab checkpoint (no network description)")
    system = Classifier(
        net=MLP(**hparams["net"]),
        label_smoothing=hparams.get("label_smoothing", 0.0),
        class_names=hparams.get("class_names"),
    )
    system.load_state_dict(ckpt["state_dict"])
    return system.eval(), dict(ckpt.get("datamodule_hyper_parameters") or {})
