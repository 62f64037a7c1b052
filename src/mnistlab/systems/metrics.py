"""The metrics of one stage (train, val or test), kept on the device and read once per epoch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

# What Classifier logs to trainer.callback_metrics in a fit (train/loss_step at the logging steps, the others
# at epoch ends): the values an EarlyStopping or ModelCheckpoint can monitor.
FIT_METRICS = ("train/loss_step", "train/loss", "train/acc", "val/loss", "val/acc")


def stage_metrics(num_classes: int, confmat: bool, per_class: bool = False, checks: bool = True) -> nn.ModuleDict:
    """Accuracy, mean loss and optionally the confusion matrix and per-class precision/recall/F1 of one stage.

    ``checks=False`` skips torchmetrics' input validation and NaN scan, each a host sync per
    update: the training stage updates every batch and checks its loss itself.
    """
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=checks),
        "loss": MeanMetric(nan_strategy="warn" if checks else "disable"),
    }
    if confmat:
        metrics["confmat"] = MulticlassConfusionMatrix(num_classes)
    if per_class:
        # average=None: one value per class, (C,) each; the three share their stat-score state.
        metrics["per_class"] = MetricCollection(
            {
                "precision": MulticlassPrecision(num_classes, average=None),
                "recall": MulticlassRecall(num_classes, average=None),
                "f1": MulticlassF1Score(num_classes, average=None),
            }
        )
    return nn.ModuleDict(metrics)


def batch_weights(targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K,) float sizes of K batches, made on their device by fills (a host list copied over would sync)."""
    sizes = [len(y) for y in targets]
    weights = torch.full((len(sizes),), float(sizes[0]), device=targets[0].device)
    for i, n in enumerate(sizes):
        if n != sizes[0]:  # only an epoch's last batch may be smaller
            weights[i] = n
    return weights
