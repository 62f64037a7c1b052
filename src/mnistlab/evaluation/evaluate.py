"""Testing a checkpoint on the official test set: the plain function behind ``scripts/evaluate.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from mnistlab.atomic_files import write_metrics
from mnistlab.checkpoints import load_system
from mnistlab.data import MNISTDataModule
from mnistlab.data.files import candidate_roots, missing_data_message, missing_resources
from mnistlab.data.files import download as download_files
from mnistlab.data.specs import SPECS
from mnistlab.errors import DataError, MnistlabError
from mnistlab.evaluation.callbacks import TestReport
from mnistlab.evaluation.report import TestResult


def data_root(saved: dict[str, Any], download: bool) -> Path:
    """Where a checkpoint's data is read from when ``data.root`` is not given (see ``candidate_roots``).

    The first candidate holding every file wins. With none, the data is downloaded into the first
    (``$MNISTLAB_DATA_DIR/<folder>`` or ``data/<folder>``), never into the saved absolute path.

    Raises:
        DataError: No candidate holds the files and the download is off or fails; names every folder searched.
    """
    spec = SPECS[saved.get("dataset", "mnist")]
    roots = candidate_roots(spec.name, saved.get("root"))
    for root in roots:
        if not missing_resources(root, spec):
            if root != roots[0]:
                print(f"data: not in {roots[0]}; reading the checkpoint's saved folder {root}", file=sys.stderr)
            return root
    missing = missing_resources(roots[0], spec)
    if not download:
        raise DataError(missing_data_message(roots[0], spec, missing, "data.download=false", roots[1:]))
    try:
        download_files(roots[0], spec)
    except DataError as e:
        if len(roots) == 1:
            raise
        first, rest = str(e).split("\n", 1)
        raise DataError(f"{first}\n  also searched: {', '.join(map(str, roots[1:]))}\n{rest}") from None
    return roots[0]


def saved_datamodule(saved: dict[str, Any], overrides: dict[str, Any] | None = None) -> MNISTDataModule:
    """The data module a run used, rebuilt from its saved arguments, with ``overrides`` on top.

    The data folder is ``data.root`` when given, else found by ``data_root``: no absolute path saved
    in the checkpoint decides where a moved checkpoint reads its data.

    Args:
        saved: ``MNISTDataModule`` arguments as the checkpoint stored them.
        overrides: Arguments the user set (``data.root=...``); None values mean "as saved".
    """
    args = {**saved, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if not (overrides or {}).get("root"):
        args["root"] = str(data_root(args, bool(args.get("download", True))))
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
    report = reports[0]
    if report.output_dir is not None and trainer.is_global_zero:
        write_metrics(report.output_dir, report.result.summary())
    return report.result
