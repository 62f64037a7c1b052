"""The data module: split, loaders and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistlab.data import MNISTDataModule
from mnistlab.engine import Engine
from mnistlab.errors import ConfigError, DataError


def make(root: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(root=str(root), download=False, verify=False, val_size=kwargs.pop("val_size", 12), **kwargs)
    dm.setup()
    return dm


def test_split_is_seeded_disjoint_and_stable(tiny_data: Path) -> None:
    a, b, c = make(tiny_data, seed=1), make(tiny_data, seed=1), make(tiny_data, seed=2)
    train_a, val_a = a.split_indices(60)
    assert len(train_a) == 48 and len(val_a) == 12
    assert not set(train_a.tolist()) & set(val_a.tolist())
    assert sorted(train_a.tolist() + val_a.tolist()) == list(range(60))
    assert torch.equal(a.val_set[0], b.val_set[0])
    assert not torch.equal(a.val_set[0], c.val_set[0])
    assert a.test_set[0].shape == (20, 1, 28, 28) and a.test_set[0].max() <= 1.0


def test_val_size_zero_trains_on_everything(tiny_data: Path) -> None:
    dm = make(tiny_data, val_size=0)
    assert len(dm.train_set[1]) == 60 and dm.val_dataloader() == []


def test_loaders_cover_every_sample_once(tiny_data: Path) -> None:
    dm = make(tiny_data, batch_size=5, eval_batch_size=7, engine=Engine(3, "chunked"))  # the chunked engine
    chunks = list(dm.train_dataloader())
    assert [len(c) for c in chunks] == [3, 3, 3, 1]  # 48 samples: 10 batches of <= 5
    seen = torch.cat([x for chunk in chunks for x, _ in chunk])
    assert len(seen) == 48 and len(torch.unique(seen.flatten(1), dim=0)) == 48
    test_batches = list(dm.test_dataloader())
    assert [len(y) for _, y in test_batches] == [7, 7, 6]  # no drop_last


def test_missing_data_message(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "train-images-idx3-ubyte" in message and "data.root" in message
    assert "MNISTLAB_DATA_DIR" not in message  # an explicit folder: the variable would not change it


@pytest.mark.parametrize("root", [None, "", "  "])
def test_a_root_that_names_no_folder_is_refused_before_any_download(
    root: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: None downloaded MNIST into ./None, an empty root (an unset variable) into the working folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"^data\.root=.* names no folder: give the folder of the dataset's IDX files"
    ):
        MNISTDataModule(root=root, download=False).prepare_data()
    assert list(tmp_path.iterdir()) == []
