"""Stratified K-fold splits of the training images, fixed by their own seed.

Written with torch rather than scikit-learn's ``StratifiedKFold`` (not a dependency of mnistlab):
one seeded permutation per class, dealt round-robin to the folds.
"""

from __future__ import annotations

import torch

from mnistlab.config_checks import check_number
from mnistlab.data.specs import TRAIN_SIZE
from mnistlab.errors import ConfigError


def check_folds(folds: int | None, fold: int, val_size: int) -> None:
    """Refuses impossible fold settings in one line, before any file is read.

    Args:
        folds: Number of folds K; None: no cross-validation.
        fold: The fold that validates.
        val_size: The data module's held-out size, which folds replace.
    """
    if folds is None:
        if fold != 0:  # the default: a fold given without folds would be silently ignored
            raise ConfigError(
                f"data.fold={fold} needs data.folds, the number of folds (e.g. data.folds=5 data.fold={fold} "
                "data.val_size=0; -m cv=5 runs every fold)"
            )
        return
    check_number("data.folds", folds, integer=True, low=2)
    if folds > TRAIN_SIZE:
        raise ConfigError(f"data.folds={folds} is more than the {TRAIN_SIZE} training images")
    check_number("data.fold", fold, integer=True, low=0, high=folds - 1)
    if val_size:
        raise ConfigError(
            f"data.folds={folds} with data.val_size={val_size}: under cross-validation the fold is the "
            "validation set; set data.val_size=0 (cv=K does)"
        )


def fold_of_each(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """The fold (0..K-1) of every image: per class as even as it can be, the same for the same seed.

    Each class's indices are shuffled with one generator seeded ``seed``; the shuffled classes are laid
    one after another and dealt to the folds in turn, so every fold holds each class's count divided by
    K (rounded either way) and the fold sizes differ by at most one.

    Args:
        labels: (N,) class indices.
        folds: Number of folds K.
        seed: The split seed (not the run's seed: every job of a sweep must see the same folds).

    Returns:
        (N,) int64 fold numbers.
    """
    generator = torch.Generator().manual_seed(seed)
    order = []
    for label in torch.unique(labels):  # sorted, so the order does not depend on the data's order
        members = torch.nonzero(labels == label).flatten()  # (n_c,)
        order.append(members[torch.randperm(len(members), generator=generator)])
    dealt = torch.empty(len(labels), dtype=torch.int64)
    dealt[torch.cat(order)] = torch.arange(len(labels)) % folds
    return dealt


def fold_split(labels: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of fold ``fold`` of ``folds``: the fold validates, the rest trains."""
    if len(labels) < folds:
        raise ConfigError(f"data.folds={folds} is more than the {len(labels)} training images")
    assigned = fold_of_each(labels.cpu(), folds, seed)
    return torch.nonzero(assigned != fold).flatten(), torch.nonzero(assigned == fold).flatten()
