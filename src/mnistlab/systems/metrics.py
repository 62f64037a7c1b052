"""The metrics of one stage (train, val or test), kept on the device and read once per epoch, at its end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
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

from mnistlab.figures import confusion_matrix_image
from mnistlab.lightning_private import logging_step
from mnistlab.systems.divergence import check_finite
from mnistlab.tb_writers import tensorboard_writers

# What Classifier logs to trainer.callback_metrics in a fit (train/loss_step at the logging steps, the others
# at epoch ends): the values an EarlyStopping or ModelCheckpoint can monitor.
FIT_METRICS = ("train/loss_step", "train/loss", "train/acc", "val/loss", "val/acc")
# The checkpoint entry holding the training metrics' state (``metric_states``) at a mid-epoch save.
TRAIN_METRICS_KEY = "train_metrics_state"


def lower_is_better(metric: str) -> bool:
    """Whether the smaller value of a logged metric is the better one: a loss (``val/loss``, ``train/loss_step``)."""
    return "loss" in metric.rsplit("/", 1)[-1]


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


def log_epoch(system: pl.LightningModule, stage: str, metrics: nn.ModuleDict) -> dict[str, Any]:
    """Computes one stage's metrics at its epoch's end, logs the scalars through ``system.log`` and resets them.

    Returns:
        The matrices, on the CPU, of a stage that keeps them: ``confmat`` (C, C), rows = actual, and
        ``per_class``, precision/recall/F1, (C,) each.
    """
    kept: dict[str, Any] = {}
    for name, metric in metrics.items():
        value = metric.compute()  # synchronised across processes by torchmetrics
        if stage == "train" and name == "loss":
            check_finite("train/loss", value, system.global_step, system.current_epoch)
        if name == "confmat":
            kept[name] = value.cpu()
        elif name == "per_class":
            kept[name] = {k: v.cpu() for k, v in value.items()}
            for k, v in value.items():
                # Unweighted mean over classes; equal on every rank (see below).
                system.log(f"{stage}/{k}_macro", v.mean(), sync_dist=True, reduce_fx="max")
        else:
            # Already equal on every rank; "max" of equal values keeps them exact and tells
            # Lightning they are synchronised (no per-epoch sync_dist warning under DDP).
            system.log(f"{stage}/{name}", value, prog_bar=stage != "train", sync_dist=True, reduce_fx="max")
        metric.reset()
    return kept


def log_confmat_image(trainer: pl.Trainer, confmat: torch.Tensor, class_names: list[str], stage: str) -> None:
    """Draws a stage's (C, C) confusion matrix into every TensorBoard writer, beside the stage's scalars."""
    step = logging_step(trainer)  # the step of this stage's scalars, so the image sits beside them
    for writer in tensorboard_writers(trainer):
        image = confusion_matrix_image(confmat, class_names, f"{stage} confusion matrix")
        writer.add_image(f"{stage}/confusion_matrix", image, step, dataformats="HWC")  # (H, W, 3)


def metric_states(metrics: nn.ModuleDict) -> dict[str, dict[str, torch.Tensor]]:
    """The accumulated state of each metric (torchmetrics keeps it out of ``state_dict``), on the CPU."""
    return {
        name: {key: value.detach().cpu() for key, value in metric.metric_state.items()}
        for name, metric in metrics.items()
    }


def restore_metric_states(metrics: nn.ModuleDict, saved: dict[str, dict[str, torch.Tensor]]) -> None:
    """Puts ``metric_states``' record back into freshly reset metrics (their states are added to the record's)."""
    for name, metric in metrics.items():
        if name in saved:
            device = next(iter(metric.metric_state.values())).device
            metric.merge_state({key: value.to(device) for key, value in saved[name].items()})
