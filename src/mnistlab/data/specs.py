"""What each supported dataset is: its files, checksums, mirrors and class names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Every dataset in MNIST's format ships the same four files, in this order.
# Training images of every dataset here (its official test set holds 10,000).
TRAIN_SIZE = 60_000
FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# One row a dataset: for each file of FILE_NAMES, the MD5 of the uncompressed content (as the original
# distribution publishes it) and the MD5 of the mirror's ``.gz`` (checked by the download).
CHECKSUMS: dict[str, tuple[tuple[str, str], ...]] = {
    "mnist": (
        ("6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
        ("27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "fashion_mnist": (
        ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("9018921c3c673c538a1fc5bad174d6f9", "25c81989df183df01b3e8a0aad5dffbe"),
        ("8181f5470baa50b63fa0f6fddb340f0a", "bef4ecab320f06d8554ea6380940ec79"),
        ("15d484375f8d13e6eb1aabb0c3f46965", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
}


@dataclass(frozen=True)
class Resource:
    """One IDX file of a dataset.

    Attributes:
        name: File name without ``.gz`` (either form is accepted on disk).
        md5: MD5 of the *uncompressed* content.
        gz_md5: MD5 of the mirror's ``.gz`` file.
    """

    name: str
    md5: str
    gz_md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in MNIST's format: 60k train, 10k test, 28x28 uint8 images, 10 classes."""

    name: str  # its key in CHECKSUMS and its conf/data/NAME.yaml
    folder: str  # its subfolder of $MNISTLAB_DATA_DIR (or data/); conf/data/*.yaml take it from here
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    mean: float  # train pixel mean after /255, for optional standardisation
    std: float
    pictures: str  # what its pictures show, which says how a picture file is brought into its form: digit, object

    @property
    def resources(self) -> tuple[Resource, ...]:
        """The four files, in FILE_NAMES order."""
        return tuple(Resource(f, *sums) for f, sums in zip(FILE_NAMES, CHECKSUMS[self.name], strict=True))

    def split_files(self, train: bool) -> tuple[Resource, Resource]:
        """The (images, labels) files of the training or the test split."""
        images, labels = self.resources[:2] if train else self.resources[2:]
        return images, labels


# torchvision's MNIST mirrors, in its order of preference.
MNIST = DatasetSpec(
    "mnist",
    "mnist",
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    classes=tuple(str(d) for d in range(10)),
    mean=0.1307,
    std=0.3081,
    pictures="digit",
)
FASHION_MNIST = DatasetSpec(
    "fashion_mnist",
    "fashion-mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=0.2860,
    std=0.3530,
    pictures="object",
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST)}


def dataset_folder(dataset: str) -> str:
    """Resolver ``${mnistlab.dataset_folder:NAME}``: the data folder of ``conf/data/NAME.yaml`` (``fashion-mnist``)."""
    return SPECS[dataset].folder if dataset in SPECS else dataset


def input_stats(data_args: Mapping[str, Any]) -> tuple[float, float]:
    """(mean, std) that turn [0, 1] pixels into a run's inputs (its data module's arguments): (0, 1) unless
    the run standardised them (``normalize``)."""
    if not data_args.get("normalize"):
        return 0.0, 1.0
    spec = SPECS[data_args.get("dataset") or "mnist"]
    return spec.mean, spec.std
