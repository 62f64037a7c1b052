"""Every private attribute of Lightning that mnistlab touches exists on this Lightning release.

``mnistlab.lightning_private`` is the one module that touches them; when a release renames one,
these tests fail with its name instead of a run failing somewhere in the middle of training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.tensorboard import SummaryWriter

import mnistlab
from mnistlab import lightning_private
from mnistlab.data import MNISTDataModule
from mnistlab.lightning_private import PRIVATE_ATTRIBUTES
from mnistlab.models import MLP
from mnistlab.systems import Classifier

SRC = Path(mnistlab.__file__).parent


def resolve(obj: Any, path: str) -> None:
    for name in path.split("."):
        obj = getattr(obj, name)


class ResolveMidTraining(pl.Callback):
    """Resolves every Trainer attribute where mnistlab uses it: inside a training step's hooks."""

    def __init__(self) -> None:
        self.missing: list[str] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == 1:
            for owner, path in PRIVATE_ATTRIBUTES:
                if owner == "Trainer":
                    try:
                        resolve(trainer, path)
                    except AttributeError:
                        self.missing.append(f"Trainer.{path}")


def test_every_listed_attribute_exists_on_this_lightning(tiny_data: Path, tmp_path: Path) -> None:
    probe = ResolveMidTraining()
    trainer = pl.Trainer(
        max_epochs=1, logger=False, callbacks=[probe], enable_progress_bar=False, default_root_dir=tmp_path
    )
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=0, batch_size=20)
    trainer.fit(Classifier(MLP(8)), datamodule=dm)
    assert trainer.global_step == 3
    owners = {"ModelCheckpoint": ModelCheckpoint(), "SummaryWriter": SummaryWriter(str(tmp_path / "tb")),
              "EarlyStopping": EarlyStopping(monitor="val/acc")}  # fmt: skip
    try:  # the [mlflow] extra (the CI installs it); without mlflow the MLflow logger cannot be used at all
        owners["MLFlowLogger"] = MLFlowLogger(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    except ModuleNotFoundError:
        print("mlflow is not installed: MLFlowLogger's attributes are not checked")
    missing = list(probe.missing)
    for owner, path in PRIVATE_ATTRIBUTES:
        if owner != "Trainer" and owner in owners:
            try:
                resolve(owners[owner], path)
            except AttributeError:
                missing.append(f"{owner}.{path}")
    trainer.save_checkpoint(tmp_path / "end.ckpt")
    ckpt = torch.load(tmp_path / "end.ckpt", weights_only=True)
    if lightning_private.checkpoint_epochs_processed(ckpt) != 1:  # one epoch trained
        missing.append("checkpoint['" + "']['".join(lightning_private.CHECKPOINT_EPOCHS_PROCESSED) + "']")
    assert not missing, f"lightning {pl.__version__} renamed {', '.join(missing)}: update mnistlab/lightning_private.py"


@pytest.mark.parametrize(("owner", "path"), PRIVATE_ATTRIBUTES)
def test_the_docstring_lists_each_attribute(owner: str, path: str) -> None:
    for name in path.split("."):
        if name.startswith("_") or name.endswith("progress"):
            assert name in lightning_private.__doc__, f"{owner}.{path}: {name} is not in the docstring"


def test_no_other_module_touches_lightnings_private_state() -> None:
    names = {seg for _, path in PRIVATE_ATTRIBUTES for seg in path.split(".") if seg.startswith("_")}
    names |= {"batch_progress", "optim_step_progress", "optim_progress"}  # Lightning's loop trackers
    # Attributes, and the checkpoint's saved loop state by its keys.
    pattern = re.compile(r"\.(" + "|".join(sorted(names)) + r")\b|(\"loops\"|'loops'|fit_loop)")
    users = {
        f"{path.relative_to(SRC)}: {m.group(0)}"
        for path in SRC.rglob("*.py")
        if path.name != "lightning_private.py"
        for m in pattern.finditer(path.read_text())
    }
    assert not users, users


def test_the_fit_loop_raises_its_count_checks_where_mnistlab_looks(tiny_data: Path, tmp_path: Path) -> None:
    """``val_check_interval`` above an epoch's batches: Lightning's ValueError, recognised by its module."""
    from mnistlab.user_errors import user_error

    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path, val_check_interval=1000
    )
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=10, batch_size=20)
    with pytest.raises(ValueError) as raised:
        trainer.fit(Classifier(MLP(8)), datamodule=dm)
    assert lightning_private.count_refused_by_lightning(raised.value), (
        f"lightning {pl.__version__} no longer raises this in {lightning_private.FIT_LOOP_MODULE}: "
        "update mnistlab/lightning_private.py"
    )
    assert "`val_check_interval` (1000) must be less than or equal" in user_error(raised.value)
    assert not lightning_private.count_refused_by_lightning(ValueError("raised here"))


def test_early_stoppings_missing_metric_is_a_user_error() -> None:
    # EarlyStopping(monitor=<a metric the run does not log>) raised a plain RuntimeError at the first
    # epoch's end: a traceback for a misspelled key, or for val/acc in a run without validation.
    from lightning.pytorch.callbacks import EarlyStopping

    from mnistlab.user_errors import user_error

    with pytest.raises(RuntimeError) as raised:
        EarlyStopping(monitor="val/accuracy")._validate_condition_metric({"val/acc": torch.tensor(0.9)})
    assert lightning_private.monitor_refused_by_lightning(raised.value), (
        f"lightning {pl.__version__} no longer raises this in {lightning_private.EARLY_STOPPING_MODULE}: "
        "update mnistlab/lightning_private.py"
    )
    assert user_error(raised.value).startswith("Early stopping conditioned on metric `val/accuracy` which is not")
    assert not lightning_private.monitor_refused_by_lightning(RuntimeError("raised here"))
    assert user_error(RuntimeError("raised here")) is None  # any other RuntimeError is a bug: its traceback stays


def test_only_the_engine_package_knows_about_chunks() -> None:
    """The redesign's rule (docs/architecture.md): the chunk idea lives in ``mnistlab.engine`` alone."""
    knowing = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "chunk" in p.read_text().lower())
    assert knowing and all(p.startswith("engine/") for p in knowing), knowing
