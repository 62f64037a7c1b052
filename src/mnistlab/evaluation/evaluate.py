"""Testing a checkpoint on the official test set: the plain function behind ``scripts/evaluate.py``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from mnistlab.atomic_files import write_atomic, write_metrics
from mnistlab.data import MNISTDataModule
from mnistlab.data.files import candidate_roots, missing_data_message, missing_resources
from mnistlab.data.files import download as download_files
from mnistlab.data.specs import SPECS
from mnistlab.errors import DataError, MnistlabError
from mnistlab.evaluation.callbacks import TestReport
from mnistlab.evaluation.ensemble import Ensemble, load_model
from mnistlab.evaluation.record import evaluation_record
from mnistlab.evaluation.report import TestResult
from mnistlab.hparams import log_hparams
from mnistlab.lightning_private import start_logging_at
from mnistlab.systems import Classifier

MEMBERS_FILE = "members.csv"


def data_root(saved: dict[str, Any], download: bool) -> Path:
    """Where a checkpoint's data is read from when ``data.root`` is not given (see ``candidate_roots``).

    Evaluate, predict and export read the test split only: the first candidate holding its two files wins.
    With none, the data is downloaded into the first (``$MNISTLAB_DATA_DIR/<folder>`` or ``data/<folder>``),
    never into the saved absolute path.

    A run trained with ``data.verify=false`` read files that need not be the published ones (its own IDX
    files): its saved folder comes first, so that the checkpoint is tested on the test split it was trained
    beside, not on whatever files ``$MNISTLAB_DATA_DIR`` holds; where that folder is gone, one line says which
    other files are read.

    Raises:
        DataError: No candidate holds the files and the download is off or fails; names every folder searched.
    """
    spec = SPECS[saved.get("dataset", "mnist")]
    roots = candidate_roots(spec.name, saved.get("root"))
    # Unverified files kept apart from this machine's data folder: the run's own, maybe not the published ones.
    own = roots.pop() if saved.get("verify") is False and len(roots) > 1 else None
    if own is not None and not missing_resources(own, spec, test_only=True):
        print(f"data: reading the checkpoint's own files in {own} (it trained with data.verify=false)", file=sys.stderr)
        return own
    for root in roots:
        if not missing_resources(root, spec, test_only=True):
            if own is not None:
                print(_other_files(own, root), file=sys.stderr)
            elif root != roots[0]:
                print(f"data: not in {roots[0]}; reading the checkpoint's saved folder {root}", file=sys.stderr)
            return root
    if own is not None:
        roots.append(own)  # named in the message as searched
    missing = missing_resources(roots[0], spec, test_only=True)
    if not download:
        raise DataError(missing_data_message(roots[0], spec, missing, "data.download=false", roots[1:]))
    try:
        download_files(roots[0], spec, missing)
    except DataError as e:
        if len(roots) == 1:
            raise
        first, rest = str(e).split("\n", 1)
        raise DataError(f"{first}\n  also searched: {', '.join(map(str, roots[1:]))}\n{rest}") from None
    if own is not None:
        print(_other_files(own, roots[0]), file=sys.stderr)
    return roots[0]


def _other_files(own: Path, root: Path) -> str:
    """The line that says a checkpoint of unverified files is tested on other files than its own."""
    return (
        f"data: the checkpoint trained on unverified files in {own} (data.verify=false), which are not there; "
        f"testing on the files in {root} instead (data.root=... names the folder to test on)"
    )


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


def official_test_set(
    saved: dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official test set of a run's data as pixels in [0, 1], (N, 1, 28, 28), and its labels (N,), on the CPU."""
    datamodule = saved_datamodule({**saved, "normalize": False}, overrides)  # its input standardisation left out
    datamodule.prepare_data(stage="test")  # a data.root of the test files alone is enough, as for evaluate.py
    datamodule.setup("test")
    images, labels = datamodule.test_set
    return images.cpu(), labels.cpu()


@dataclass
class Evaluation:
    """What ``evaluate`` measured: the model's test result, and each member's accuracy for an ensemble.

    Attributes:
        result: The test result of the model (the ensemble, for several checkpoints).
        members: ``(checkpoint, test accuracy)`` of each member; empty for one checkpoint.
    """

    result: TestResult
    members: list[tuple[Path, float]] = field(default_factory=list)

    def text(self) -> str:
        """The console report, and one line per member of an ensemble."""
        lines = [f"member {i}: test/acc {acc:.4f}  {path}" for i, (path, acc) in enumerate(self.members)]
        head = f"ensemble of {len(self.members)} members (mean of their probabilities)\n" if self.members else ""
        return head + self.result.text() + ("\n\n" + "\n".join(lines) if lines else "")


def member_accuracies(system: Classifier, datamodule: MNISTDataModule, batch_size: int = 1000) -> list[float]:
    """Each ensemble member's accuracy on the data module's test set; [] for a single network.

    The argmax of each member's logits, as its own run's test takes it: a sigmoid head's probabilities tie
    at 1.0 in float32 once logits pass about 17, and their argmax would score the member otherwise.
    """
    if not isinstance(system.net, Ensemble):
        return []
    images, labels = datamodule.test_set  # (N, 1, 28, 28) pixels in [0, 1], (N,), on the test device
    ensemble = system.net.to(images.device)
    correct = torch.zeros(len(ensemble.members), dtype=torch.long, device=images.device)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = ensemble.member_logits(images[start : start + batch_size])  # (M, B, C)
            correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum(1)
    return (correct.double() / len(labels)).tolist()


def evaluate(
    ckpt_path: str | Path | Sequence[str | Path],
    trainer: pl.Trainer,
    data_overrides: dict[str, Any] | None = None,
    columns: bool = True,
) -> Evaluation:
    """Tests a checkpoint's system, or an ensemble of several, on the test set of the data it was trained on.

    Args:
        ckpt_path: A training checkpoint (``best.ckpt`` or ``last.ckpt``), or several: their ensemble
            (``mnistlab.evaluation.ensemble``), whose members are also tested one by one.
        trainer: A trainer whose callbacks include a ``TestReport`` (it writes the files).
        data_overrides: ``MNISTDataModule`` arguments replacing the saved ones.
        columns: Whether its HParams record names the HParams tab's columns (``hparams.log_hparams``).

    The loggers record what was tested (``mnistlab.evaluation.record``): TensorBoard shows the test scalars at
    the checkpoints' training step, and an HParams record with the members' training settings and the result.

    Returns:
        The test result (accuracy, loss, confusion matrix and per-class metrics) and the members' accuracies.
    """
    reports = [cb for cb in trainer.callbacks if isinstance(cb, TestReport)]
    if not reports:
        raise MnistlabError("evaluate needs a TestReport callback in the trainer")
    paths = [ckpt_path] if isinstance(ckpt_path, (str, Path)) else list(ckpt_path)
    system, saved = load_model(paths)
    datamodule = saved_datamodule(saved, data_overrides)
    record, step = evaluation_record([Path(p) for p in paths])
    for logger in trainer.loggers:
        logger.log_hyperparams(record)
    start_logging_at(trainer, step)
    trainer.test(system, datamodule=datamodule, verbose=False)
    report = reports[0]
    if trainer.is_global_zero and not trainer.fast_dev_run:
        log_hparams(trainer, record, report.result.summary(), columns=columns)
    members = list(zip(map(Path, paths), member_accuracies(system, datamodule), strict=False))
    if report.output_dir is not None and trainer.is_global_zero and not trainer.fast_dev_run:  # a smoke test: no report
        write_metrics(report.output_dir, report.result.summary())
        if members:
            rows = "".join(f"{i},{path},{acc:.6f}\n" for i, (path, acc) in enumerate(members))
            write_atomic(report.output_dir / MEMBERS_FILE, f"member,checkpoint,test/acc\n{rows}".encode())
    return Evaluation(report.result, members)
