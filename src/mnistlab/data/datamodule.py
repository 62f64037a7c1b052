"""The MNIST-family LightningDataModule: whole dataset in memory, batched on the device."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

from mnistlab.config_checks import check_number
from mnistlab.data.augment import RandomAffine
from mnistlab.data.files import (
    check_files,
    download,
    found_elsewhere,
    load_split,
    missing_data_message,
    missing_resources,
)
from mnistlab.data.folds import check_folds, fold_split
from mnistlab.data.loaders import EvalBatches, TrainBatches
from mnistlab.data.specs import SPECS, TRAIN_SIZE, DatasetSpec, Resource
from mnistlab.errors import ConfigError, DataError, MnistlabError

if TYPE_CHECKING:
    from mnistlab.engine import Engine

log = logging.getLogger(__name__)


class MNISTDataModule(pl.LightningDataModule):
    """MNIST or Fashion-MNIST from the original IDX files.

    Pixels are scaled to [0, 1] as in the notebook (optionally standardised). The official
    10k test set is used as is; validation is ``val_size`` images held out of the 60k
    training images by a permutation seeded with ``seed``, so the split is the same on
    every call and every machine. With ``folds`` (K-fold cross-validation), fold ``fold`` of K
    stratified folds validates and the other K-1 train; the folds depend on ``split_seed`` only
    (``mnistlab.data.folds``), so jobs with different seeds see the same folds.

    Args:
        root: Folder with the four IDX files, gzipped or raw.
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        download: Fetch missing files from torchvision's mirrors in ``prepare_data``.
        batch_size: Training batch size (one optimizer step each, without gradient accumulation).
        eval_batch_size: Batch size of validation, test and predict.
        val_size: Training images held out for validation; 0 trains on all 60k.
        seed: Seed of the split and of the per-epoch shuffle.
        normalize: Standardise with the train mean/std instead of plain [0, 1].
        verify: Check the published checksums; off only for hand-made test files.
        folds: Number of folds K (>= 2) of the training images; None: no cross-validation.
            Needs ``val_size=0``: the fold is the validation set.
        fold: The fold that validates, 0..K-1.
        split_seed: Seed of the folds, independent of ``seed``.
        augment: Random transform of the training images, applied on the device to each
            batch; None (the default) trains on the images as they are.
        engine: The run's engine (``mnistlab.engine.choose_engine``), which may hand the training
            batches to the system in groups; None: one batch per ``training_step``, as Lightning's loop.
    """

    def __init__(
        self,
        root: str = "data/mnist",
        dataset: str = "mnist",
        download: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        seed: int = 42,
        normalize: bool = False,
        verify: bool = True,
        folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        augment: RandomAffine | None = None,
        engine: Engine | None = None,
    ) -> None:
        super().__init__()
        if dataset not in SPECS:
            raise MnistlabError(f"data.dataset={dataset!r} is unknown; choose one of {sorted(SPECS)}")
        if root is None or not str(root).strip():  # None would download into ./None, '' into the working folder
            raise ConfigError(
                f"data.root={root!r} names no folder: give the folder of the dataset's IDX files, e.g. data/mnist"
            )
        # Checked here, before any file is read; the split is re-checked against the real count in setup.
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            check_number(f"data.{key}", value, integer=True, low=1)
        check_number("data.val_size", val_size, integer=True, low=0, high=TRAIN_SIZE - 1)
        check_folds(folds, fold, val_size)
        # Only plain values go into checkpoints (read back with weights_only=True and passed to
        # this constructor again); evaluation never augments, and the run's config records it.
        self.save_hyperparameters(ignore=["augment", "engine"], logger=False)
        self.augment = augment if augment else None  # an identity RandomAffine costs nothing
        self.root = Path(str(root)).expanduser()  # str(): Hydra reads `data.root=2024` as a number
        self.spec: DatasetSpec = SPECS[dataset]
        self.train_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.val_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.test_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.engine = engine
        self._checked: set[bool] = set()  # the `test_only` values checked (verify=false: False, the test split read)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def has_validation(self) -> bool:
        return self.hparams.val_size > 0 or self.hparams.folds is not None

    def _missing(self, stage: str | None) -> list[Resource]:
        """The files ``stage`` needs that are not on disk: a test or a prediction needs no training files.

        A fit needs the test files too: its test follows it (``training.fit_and_test``), and must not fail after it.
        """
        return missing_resources(self.root, self.spec, test_only=stage in ("test", "predict"))

    def prepare_data(self, stage: str | None = None) -> None:
        """Checks (and downloads, if allowed) the files the stage needs: the Trainer's, else ``stage``.

        Args:
            stage: Outside a Trainer, what the data is for: ``"test"`` needs the test split alone
                (``evaluation.evaluate.official_test_set``, which predict.py and export.py read); None: all of it.
        """
        if self.trainer is not None:
            stage = self.trainer.state.fn.value
        if missing := self._missing(stage):
            if not self.hparams.download:
                raise DataError(missing_data_message(self.root, self.spec, missing, "data.download=false"))
            if found_elsewhere(self.root, self.spec, missing):  # a folder one level off: no second copy
                raise DataError(missing_data_message(self.root, self.spec, missing, "files missing, not downloaded"))
            download(self.root, self.spec, missing)
        test_only = stage in ("test", "predict")
        # Here, before Lightning opens the loggers' files (setup comes after them). training.fit_and_test
        # calls this before the loggers record the run, and Lightning again in fit: one check is enough.
        if self.hparams.verify and not (self._checked & {test_only, False}):
            check_files(self.root, self.spec, test_only=test_only)
            self._checked.add(test_only)
        elif not self.hparams.verify and not test_only and not self._checked:
            # Hand-made files: the test split is read only after the fit. A cut-short file, a label out of range or
            # no image at all stopped the run there, trained; read once here, they stop it before any training.
            load_split(self.root, self.spec, train=False, verify=False)
            self._checked.add(False)

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self._device()).unsqueeze(1).float().div_(255)  # (N, 1, 28, 28) in [0, 1]
        if self.hparams.normalize:
            x = x.sub_(self.spec.mean).div_(self.spec.std)
        return x

    def split_indices(self, n: int = TRAIN_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and validation indices into the ``n`` training images; seeded, so idempotent.

        Under cross-validation (``folds``) ``setup`` splits by ``mnistlab.data.folds.fold_split`` instead.
        """
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))
        return perm[self.hparams.val_size :], perm[: self.hparams.val_size]

    def setup(self, stage: str | None = None) -> None:
        # Missing files without prepare_data (e.g. evaluate on a fresh machine): same message.
        if missing := self._missing(stage):
            raise DataError(missing_data_message(self.root, self.spec, missing, "files missing"))
        verify = self.hparams.verify
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = load_split(self.root, self.spec, train=True, verify=verify)
            if len(labels) != TRAIN_SIZE and verify:
                raise DataError(f"{self.root}: {len(labels)} training images, expected {TRAIN_SIZE}")
            val_size = self.hparams.val_size
            if type(val_size) is int and val_size >= len(labels) != TRAIN_SIZE:  # the default 5,000, in a small set
                raise ConfigError(
                    f"data.val_size={val_size} is out of range: {self.root} holds {len(labels)} training images, so "
                    f"it must be an integer in 0-{len(labels) - 1}"
                )
            check_number("data.val_size", val_size, integer=True, low=0, high=len(labels) - 1)
            h = self.hparams
            if h.folds is None:
                train_idx, val_idx = self.split_indices(len(labels))
            else:  # stratified folds need the labels
                train_idx, val_idx = fold_split(labels, h.folds, h.fold, h.split_seed)
                if self.trainer is None or self.trainer.is_global_zero:  # data.folds=5 alone is one fold, not a CV
                    log.info(
                        "data: fold %d of %d validates (%d images), the other %d train (%d); a run trains one fold, "
                        "-m cv=%d trains each",
                        h.fold, h.folds, len(val_idx), h.folds - 1, len(train_idx), h.folds,
                    )  # fmt: skip
            # Split the uint8 images, then convert: a quarter of the memory traffic of splitting floats.
            self.train_set = (self._to_float(images[train_idx]), labels[train_idx].to(self._device()))
            if self.has_validation:
                self.val_set = (self._to_float(images[val_idx]), labels[val_idx].to(self._device()))
        if stage in (None, "test", "predict") and self.test_set is None:
            images, labels = load_split(self.root, self.spec, train=False, verify=verify)
            self.test_set = (self._to_float(images), labels.to(self._device()))

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> Iterable:
        rank, world = self._rank()
        loader = TrainBatches(
            *self.train_set,
            batch_size=self.hparams.batch_size,
            seed=self.hparams.seed,
            rank=rank,
            world_size=world,
            augment=self.augment,
            # Lightning turns shuffling off for overfit_batches by swapping a DataLoader's sampler; do it here.
            shuffle=not (self.trainer is not None and self.trainer.overfit_batches > 0),
        )
        # Resumed runs continue the shuffle sequence where the checkpoint left it.
        loader.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
        return loader if self.engine is None else self.engine.batches(loader, self.trainer)

    def val_dataloader(self) -> EvalBatches | list:
        if self.val_set is None:
            return []  # no validation loop when val_size=0; never validate on the test set
        return EvalBatches(*self.val_set, self.hparams.eval_batch_size, *self._rank())

    def test_dataloader(self) -> EvalBatches:
        return EvalBatches(*self.test_set, self.hparams.eval_batch_size, *self._rank())

    def predict_dataloader(self) -> EvalBatches:
        return EvalBatches(*self.test_set, self.hparams.eval_batch_size, *self._rank())
