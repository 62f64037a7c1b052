"""Testing a checkpoint on the official test set: the plain function behind ``scripts/evaluate.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from mnistlab.checkpoints import load_system
from mnistlab.data import MNISTDataModule
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.callbacks import TestReport
from mnistlab.evaluation.report import TestResult


def saved_datamodule(saved: dict[str, Any], overrides: dict[str, Any] | None = None) -> MNISTDataModule:
    """The data module a run used, rebuilt from its saved arguments, with ``overrides`` on top.

    Args:
        saved: ``MNISTDataModule`` arguments as the checkpoint stored them.
        overrides: Arguments the user set (``data.root=...``); None values mean "as saved".
    """
    args = {**saved, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return MNISTDataModule(**args)


def evaluate(ckpt_path: str | Path, trainer: pl.Trainer, data_overrides: dict[str, Any] | None = None) -> TestResult:
    """Tests the checkpoint's system on the test set of the data it was trained on.

    Args:
        ckpt_path: A training checkpoint (``best.ckpt`` or ``last.ckpt``).
        trainer: A trainer whose callbacks include a ``TestReport`` (it writes the files).
        data_overrides: ``MNISTDataModule`` arguments replacing the saved ones.

    Returns:
        The test result: accuracy, loss, confusion matrix and per-class metrics.
    """
    reports = [cb for cb in trainer.callbacks if isinstance(cb, TestReport)]
    if not reports:
        raise MnistlabError("evaluate needs a TestReport callback in the trainer")
    system, saved = load_system(ckpt_path)
    trainer.test(system, datamodule=saved_datamodule(saved, data_overrides), verbose=False)
    return reports[0].result
