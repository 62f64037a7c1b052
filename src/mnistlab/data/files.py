"""Locating, downloading, verifying and loading a dataset's IDX files."""

from __future__ import annotations

from pathlib import Path

import torch

from mnistlab.data.idx import md5, parse_idx, read_bytes
from mnistlab.data.specs import DatasetSpec, Resource
from mnistlab.errors import DataError

IMAGE_SIZE = (28, 28)


def find_file(root: Path, resource: Resource) -> Path | None:
    """Returns the gzipped or raw copy of ``resource`` under ``root``, or None."""
    for name in (resource.name + ".gz", resource.name):
        if (root / name).is_file():
            return root / name
    return None


def missing_resources(root: Path, spec: DatasetSpec) -> list[Resource]:
    """The resources of ``spec`` that have no file under ``root``."""
    return [r for r in spec.resources if find_file(root, r) is None]


def missing_data_message(root: Path, spec: DatasetSpec, missing: list[Resource], why: str) -> str:
    names = ", ".join(r.name + "[.gz]" for r in missing)
    return (
        f"{spec.name} data not found in {root} ({why}); expected files: {names}. "
        f"Point data.root=PATH at a folder holding them, or set MNISTLAB_DATA_DIR to a folder "
        f"with a {root.name}/ subfolder, or allow the download with data.download=true."
    )


def download(root: Path, spec: DatasetSpec) -> None:
    """Downloads the missing files of ``spec`` into ``root`` from torchvision's mirrors.

    Raises:
        DataError: When no mirror could deliver a file.
    """
    from torchvision.datasets.utils import download_url  # only needed when downloading

    missing = missing_resources(root, spec)
    root.mkdir(parents=True, exist_ok=True)
    for resource in missing:
        errors = []
        for mirror in spec.mirrors:
            try:
                download_url(mirror + resource.name + ".gz", root, resource.name + ".gz", resource.gz_md5)
                break
            except Exception as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(missing_data_message(root, spec, missing, "download failed: " + "; ".join(errors)))


def _load(root: Path, resource: Resource, kind: str, verify: bool) -> torch.Tensor:
    path = find_file(root, resource)
    if path is None:
        raise DataError(f"{root / resource.name}[.gz]: file not found")
    data = read_bytes(path)
    if verify and (found := md5(data)) != resource.md5:
        raise DataError(
            f"{path}: checksum mismatch: expected md5 {resource.md5} of the uncompressed content, found {found}"
        )
    return parse_idx(data, path, kind)


def load_split(root: Path, spec: DatasetSpec, train: bool, verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Loads the train or test split of ``spec`` from ``root``.

    Args:
        root: Folder holding the IDX files.
        spec: The dataset.
        train: The 60k train split if True, else the official 10k test split.
        verify: Check the published MD5 checksums (turn off only for hand-made test files).

    Returns:
        Images, uint8 of shape (N, 28, 28), and labels, int64 of shape (N,).
    """
    image_res, label_res = (spec.train_images, spec.train_labels) if train else (spec.test_images, spec.test_labels)
    images = _load(root, image_res, "images", verify)
    labels = _load(root, label_res, "labels", verify)
    if tuple(images.shape[1:]) != IMAGE_SIZE:
        raise DataError(f"{find_file(root, image_res)}: images are {tuple(images.shape[1:])}, expected {IMAGE_SIZE}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{find_file(root, label_res)}: {labels.shape[0]} labels but {images.shape[0]} images "
            f"in {find_file(root, image_res).name}"
        )
    if labels.numel() and int(labels.max()) >= len(spec.classes):
        raise DataError(f"{find_file(root, label_res)}: label {int(labels.max())} outside 0-{len(spec.classes) - 1}")
    return images, labels.long()
