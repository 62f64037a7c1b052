"""K-fold cross-validation: the folds of the data module and the refused settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistlab.data import MNISTDataModule
from mnistlab.data.folds import fold_of_each, fold_split
from mnistlab.errors import ConfigError


def test_folds_are_disjoint_covering_stratified_and_fixed_by_their_own_seed(mnist_dir: Path) -> None:
    from mnistlab.data.files import load_split
    from mnistlab.data.specs import SPECS

    _, labels = load_split(mnist_dir, SPECS["mnist"], train=True, verify=False)
    folds = fold_of_each(labels, 5, seed=0)
    vals = [fold_split(labels, 5, i, seed=0)[1] for i in range(5)]
    assert sorted(torch.cat(vals).tolist()) == list(range(60_000))  # disjoint and covering
    assert [len(v) for v in vals] == [12_000] * 5
    per_class = torch.bincount(labels)
    for i in range(5):
        counts = torch.bincount(labels[folds == i], minlength=10)
        assert ((counts - per_class / 5).abs() <= 1).all()  # stratified: each class split evenly
    train, val = fold_split(labels, 5, 2, seed=0)
    assert not set(train.tolist()) & set(val.tolist()) and len(train) == 48_000
    assert torch.equal(fold_of_each(labels, 5, seed=0), folds)
    assert not torch.equal(fold_of_each(labels, 5, seed=1), folds)


def test_the_run_seed_does_not_move_the_folds_and_the_test_set_stays(tiny_data: Path) -> None:
    def module(**kwargs) -> MNISTDataModule:
        dm = MNISTDataModule(root=str(tiny_data), download=False, verify=False, val_size=0, folds=3, **kwargs)
        dm.setup()
        return dm

    a, b, c = module(fold=1, seed=1), module(fold=1, seed=2), module(fold=2, seed=1)
    assert torch.equal(a.val_set[0], b.val_set[0]) and a.has_validation
    assert len(a.train_set[1]) + len(a.val_set[1]) == 60 and len(a.val_set[1]) == 20
    assert not torch.equal(a.val_set[0], c.val_set[0])
    assert torch.equal(a.test_set[0], c.test_set[0]) and len(a.test_set[1]) == 20
    assert not torch.equal(module(fold=1, split_seed=5).val_set[0], a.val_set[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "data.folds=1 is out of range: must be an integer >= 2"),
        ({"folds": 60_001}, "data.folds=60001 is more than the 60000 training images"),
        ({"fold": 2}, "data.fold=2 needs data.folds, the number of folds (e.g. data.folds=5 data.fold=2"),
        ({"folds": 5, "fold": 5}, "data.fold=5 is out of range: must be an integer in 0-4"),
        ({"folds": 5, "fold": -1}, "data.fold=-1 is out of range"),
        ({"folds": 5, "val_size": 5000}, "data.folds=5 with data.val_size=5000: under cross-validation"),
    ],
)
def test_impossible_fold_settings_are_refused_before_reading(kwargs: dict, message: str) -> None:
    kwargs = {"val_size": 0, **kwargs}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        MNISTDataModule(root="/nonexistent", download=False, **kwargs)


def test_a_run_of_one_fold_says_so(tiny_data: Path, tmp_path: Path) -> None:
    """``data.folds=3`` alone trains fold 0 (data.fold's default), which its log now says, with what trains each."""
    from conftest import run_script

    args = (f"data.root={tiny_data}", "data.download=false", "data.verify=false", "data.val_size=0", "data.folds=3")
    run = run_script("train.py", *args, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0",
                     f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    line = "data: fold 0 of 3 validates (20 images), the other 2 train (40); a run trains one fold, -m cv=3 trains each"
    assert line in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
