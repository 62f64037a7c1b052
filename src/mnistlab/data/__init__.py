"""MNIST-family data: IDX files, dataset specs and the in-memory LightningDataModule.

The data module is imported on first use: Hydra imports the sweep plugins, which read ``specs``, at
every command's start, and the data module would bring Lightning with it.
"""

from typing import TYPE_CHECKING, Any

from mnistlab.data.specs import FASHION_MNIST, MNIST, SPECS, DatasetSpec

if TYPE_CHECKING:
    from mnistlab.data.datamodule import MNISTDataModule

__all__ = ["FASHION_MNIST", "MNIST", "SPECS", "DatasetSpec", "MNISTDataModule"]


def __getattr__(name: str) -> Any:
    if name == "MNISTDataModule":
        from mnistlab.data.datamodule import MNISTDataModule

        return MNISTDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
