"""Locating, downloading, verifying and loading a dataset's IDX files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from mnistlab.data.idx import md5, parse_idx, read_bytes
from mnistlab.data.specs import CHECKSUMS, FILE_NAMES, SPECS, DatasetSpec, Resource
from mnistlab.errors import DataError, first_line

IMAGE_SIZE = (28, 28)


def find_file(root: Path, resource: Resource) -> Path | None:
    """Returns the gzipped or raw copy of ``resource`` under ``root``, or None."""
    for name in (resource.name + ".gz", resource.name):
        if (root / name).is_file():
            return root / name
    return None


def missing_resources(root: Path, spec: DatasetSpec, test_only: bool = False) -> list[Resource]:
    """The resources of ``spec`` (``test_only``: of its test split) that have no file under ``root``."""
    needed = spec.split_files(False) if test_only else spec.resources
    return [r for r in needed if find_file(root, r) is None]


ENV = "MNISTLAB_DATA_DIR"


def root_origin(root: Path, spec: DatasetSpec) -> str:
    """How ``root`` was chosen: "env" ($MNISTLAB_DATA_DIR/<folder>), "default" (data/<folder>) or "data.root".

    Used to suggest only the remedies that apply.
    """
    folder = spec.folder
    resolved = root.expanduser().absolute()
    if (env := os.environ.get(ENV)) and resolved == (Path(env).expanduser().absolute() / folder):
        return "env"
    if not os.environ.get(ENV) and resolved == Path.cwd() / "data" / folder:
        return "default"
    return "data.root"


def found_elsewhere(root: Path, spec: DatasetSpec, missing: Sequence[Resource]) -> Path | None:
    """The folder one level off ``root`` that holds the ``missing`` files, or None.

    Its subfolder named for the dataset (``data.root`` or ``$MNISTLAB_DATA_DIR`` given as the folder above
    ``mnist/``), or its parent (``$MNISTLAB_DATA_DIR`` given as ``mnist/`` itself).
    """
    for folder in (root / spec.folder, root.parent):
        if folder != root and missing and all(find_file(folder, r) for r in missing):
            return folder
    return None


def remedy(root: Path, spec: DatasetSpec, download_off: bool, missing: Sequence[Resource] = ()) -> str:
    """What the user can do, for the way ``root`` was chosen only."""
    folder = spec.folder
    origin = root_origin(root, spec)
    if (there := found_elsewhere(root, spec, missing)) is not None:
        fix = f"set {ENV}={there.parent}" if origin == "env" and there.name == folder else f"give data.root={there}"
        return f"  fix: they are in {there}: {fix}"
    if origin == "env":
        where = f"put the files into {root}, or set {ENV} to a folder with a {folder}/ subfolder holding them"
    elif origin == "default":
        where = f"put the files into {root}, or set {ENV} to a folder with a {folder}/ subfolder, or data.root=PATH"
    else:
        where = "point data.root at a folder holding them"
    return "  fix: " + where + (", or allow the download with data.download=true" if download_off else "")


def missing_data_message(
    root: Path, spec: DatasetSpec, missing: list[Resource], why: str, searched: list[Path] | None = None
) -> str:
    """A few short lines: where it looked, what is missing, why, and only the remedies that apply.

    Args:
        root: The folder the files should be in.
        spec: The dataset.
        missing: Its resources without a file there.
        why: ``"data.download=false"``, ``"files missing"`` or ``"download failed"``.
        searched: Other folders looked in first, when the root was chosen among several.
    """
    lines = [f"{spec.name} data not found in {root} ({why})"]
    if searched:
        lines.append("  also searched: " + ", ".join(str(p) for p in searched if p != root))
    lines.append("  missing: " + ", ".join(r.name + "[.gz]" for r in missing))
    lines.append(remedy(root, spec, why == "data.download=false", missing))
    return "\n".join(lines)


def candidate_roots(dataset: str, saved_root: str | Path | None) -> list[Path]:
    """Where a checkpoint's data is looked for, in order, when ``data.root`` is not given.

    ``$MNISTLAB_DATA_DIR/<folder>`` if set, else ``data/<folder>`` in the working directory, and the
    checkpoint's saved (absolute) root only last: a checkpoint moved to another machine finds the
    data where that machine keeps it.
    """
    folder = SPECS[dataset].folder if dataset in SPECS else dataset
    env = os.environ.get(ENV)
    roots = [Path(env).expanduser() / folder if env else Path.cwd() / "data" / folder]
    if saved_root is not None and Path(saved_root).expanduser() not in roots:
        roots.append(Path(saved_root).expanduser())
    return roots


def _new_folders(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, deepest first."""
    new = []
    for folder in (root, *root.parents):
        if folder.exists():
            break
        new.append(folder)
    return new


def download(root: Path, spec: DatasetSpec, missing: Sequence[Resource]) -> None:
    """Downloads ``missing`` (files of ``spec`` found missing) into ``root`` from torchvision's mirrors.

    On failure nothing is left behind: no partial file, and no folder that the download created.

    Args:
        root: The data folder.
        spec: The dataset.
        missing: The files to fetch (``missing_resources``: evaluating or predicting needs no training files).

    Raises:
        DataError: When no mirror could deliver a file (the message holds each mirror's error).
    """
    from torchvision.datasets.utils import download_url  # only needed when downloading

    created = _new_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            missing_data_message(root, spec, missing, f"cannot create the folder to download into: {e.strerror}")
        ) from None
    for resource in missing:
        errors = []
        target = root / (resource.name + ".gz")
        for mirror in spec.mirrors:
            try:
                download_url(mirror + resource.name + ".gz", root, target.name, resource.gz_md5)
                break
            except Exception as e:  # urllib, HTTP and checksum errors alike: reported, next mirror
                errors.append(f"  {mirror}: {first_line(e)}")
                with contextlib.suppress(OSError):  # a read-only folder: the error above says why
                    target.unlink()
        else:
            for folder in created:  # deepest first; a folder that holds other files stays
                try:
                    folder.rmdir()
                except OSError:
                    break
            message = missing_data_message(root, spec, missing, "download failed")
            first, rest = message.split("\n", 1)
            raise DataError("\n".join([first, *errors, rest]))


def _check_content(path: Path, resource: Resource, data: bytes) -> None:
    if (found := md5(data)) == resource.md5:
        return
    # The same file of another dataset here (MNIST's where Fashion-MNIST's belong): say whose, not an MD5.
    column = {name: sums[FILE_NAMES.index(resource.name)][0] for name, sums in CHECKSUMS.items()}
    if (other := next((name for name, digest in column.items() if digest == found), None)) is not None:
        ours = next(name for name, digest in column.items() if digest == resource.md5)
        raise DataError(
            f"{path} is {other}'s {resource.name}, not {ours}'s, which this run reads: "
            f"point data.root at a folder of {ours}'s files (data={other} reads these)"
        )
    # A damaged download or files of the user's own (hand-made IDX files): the one setting that reads the latter.
    raise DataError(
        f"{path}: checksum mismatch: expected md5 {resource.md5} of the uncompressed content, found {found}; "
        f"if these are files of your own, not the published {resource.name}, add data.verify=false"
    )


def check_files(root: Path, spec: DatasetSpec, test_only: bool = False) -> None:
    """Refuses damaged files or another dataset's before any work (``load_split`` checks them again as it loads).

    The mirror's ``.gz`` is recognised by its own MD5, a read without decompressing; any other copy
    (raw, or gzipped anew) by the MD5 of its content.
    """
    for resource in spec.split_files(False) if test_only else spec.resources:
        path = find_file(root, resource)
        if path is not None and not (path.suffix == ".gz" and md5(path.read_bytes()) == resource.gz_md5):
            _check_content(path, resource, read_bytes(path))


def _load(root: Path, resource: Resource, kind: str, verify: bool) -> torch.Tensor:
    path = find_file(root, resource)
    if path is None:
        raise DataError(f"{root / resource.name}[.gz]: file not found")
    data = read_bytes(path)
    if verify:
        _check_content(path, resource, data)
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
    image_res, label_res = spec.split_files(train)
    images = _load(root, image_res, "images", verify)
    labels = _load(root, label_res, "labels", verify)
    if tuple(images.shape[1:]) != IMAGE_SIZE:
        raise DataError(f"{find_file(root, image_res)}: images are {tuple(images.shape[1:])}, expected {IMAGE_SIZE}")
    if images.shape[0] == 0:  # a test split of none failed after the fit; a train split's named data.val_size
        raise DataError(f"{find_file(root, image_res)}: holds no images")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{find_file(root, label_res)}: {labels.shape[0]} labels but {images.shape[0]} images "
            f"in {find_file(root, image_res).name}"
        )
    if labels.numel() and int(labels.max()) >= len(spec.classes):
        raise DataError(f"{find_file(root, label_res)}: label {int(labels.max())} outside 0-{len(spec.classes) - 1}")
    return images, labels.long()
