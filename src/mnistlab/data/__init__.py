"""MNIST-family data: IDX files, dataset specs and the in-memory LightningDataModule."""

from mnistlab.data.datamodule import MNISTDataModule
from mnistlab.data.specs import FASHION_MNIST, MNIST, SPECS, DatasetSpec

__all__ = ["FASHION_MNIST", "MNIST", "SPECS", "DatasetSpec", "MNISTDataModule"]
