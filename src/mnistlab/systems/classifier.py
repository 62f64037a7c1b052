"""The LightningModule that trains any network of ``mnistlab.models``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
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

from mnistlab.errors import NonFiniteLossError
from mnistlab.records import build_network, factory_from_record, network_record, output_width, upgrade
from mnistlab.systems.losses import HEADS, Head, loss_fn, probabilities
from mnistlab.systems.raw_steps import count_optimizer_steps, raw_steps_allowed
from mnistlab.validation import check_number

Batch = tuple[torch.Tensor, torch.Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
NOTEBOOK_ADAM: OptimizerFactory = partial(torch.optim.Adam, lr=1e-3)


def describe(factory: Callable | None) -> dict[str, Any] | None:
    """A plain-value record of a ``functools.partial`` (kept in checkpoints instead of a pickle)."""
    if factory is None:
        return None
    func = factory.func if isinstance(factory, partial) else factory
    keywords = dict(factory.keywords) if isinstance(factory, partial) else {}
    return {"target": f"{func.__module__}.{func.__qualname__}", **keywords}


def stage_metrics(num_classes: int, confmat: bool, per_class: bool = False) -> nn.ModuleDict:
    """Accuracy, mean loss and optionally the confusion matrix and per-class precision/recall/F1 of one stage."""
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro"), "loss": MeanMetric()}
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


class Classifier(pl.LightningModule):
    """Owns the head, the loss, the metrics, the optimizer and the logging of an image classifier.

    The network is any ``nn.Module`` that maps (B, 1, 28, 28) images to (B, C) logits; the
    system turns them into probabilities (``head``) and takes C and the class names from the data.

    Training uses manual optimization: each Lightning step receives a chunk of batches
    (see ``mnistlab.data.loaders.TrainChunks``) and takes one optimizer step per batch.
    ``train/loss_step`` is the mean loss of each chunk; epoch metrics are accumulated on
    the device and read once per epoch, so the hot loop never waits on the host.

    Checkpoints hold plain values only (they load with ``torch.load(weights_only=True)``):
    ``hparams["net"]`` is the network's record ``{"_target_": class path, **arguments}``
    (``mnistlab.records``), and the optimizer and scheduler are ``{"target": ..., **kwargs}``
    records. ``Classifier.load_from_checkpoint(path)`` passes these records back to
    ``__init__``, which rebuilds the network by calling its ``torch.nn.Module`` subclass and
    nothing else; records in the older form (an MLP's ``hidden_units``/``num_classes``/
    ``head``/``init``) still load, their ``head`` taking the place of the default.

    Args:
        net: The network, or its record (as ``load_from_checkpoint`` passes it).
        optimizer: Partial optimizer, called with the parameters (or its record).
        scheduler: Optional partial LR scheduler, stepped after every optimizer step (or its record).
        label_smoothing: Cross-entropy label smoothing (softmax head only).
        class_names: Names for tables and plots, one per logit; digits by default.
        head: How logits become probabilities: ``softmax`` (trained with cross-entropy) or
            ``sigmoid`` (the notebook's ``Dense(10, sigmoid)``, trained with Keras' sparse
            categorical cross-entropy; see ``mnistlab.systems.losses``).
        net_config: The resolved config ``net`` was built from (``_target_`` naming its class,
            and plain keyword arguments), recorded so that a checkpoint can rebuild the network.
            None records the class alone (rebuilt with its default arguments).
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        optimizer: OptimizerFactory | Mapping[str, Any] = NOTEBOOK_ADAM,
        scheduler: SchedulerFactory | Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        class_names: list[str] | None = None,
        head: Head = "softmax",
        net_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if isinstance(net, Mapping):  # a checkpoint's record
            record, legacy_head = upgrade(net, "checkpoint network")
            head = legacy_head or head
            net = build_network(record)
        else:
            record = network_record(net, net_config)
        if isinstance(optimizer, Mapping):
            optimizer = factory_from_record(optimizer, torch.optim.Optimizer, "checkpoint optimizer")
        if isinstance(scheduler, Mapping):
            scheduler = factory_from_record(scheduler, torch.optim.lr_scheduler.LRScheduler, "checkpoint scheduler")
        if head not in HEADS:
            raise ValueError(f"system.head={head!r} must be one of {list(HEADS)}")
        optimizer_record = describe(optimizer) or {}
        if "lr" in optimizer_record:
            check_number("optimizer.lr", optimizer_record["lr"], low=0, low_open=True)
        check_number("system.label_smoothing", label_smoothing, low=0, high=0.999)
        num_classes = output_width(net)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"the network returns {num_classes} logits but there are {len(class_names)} classes "
                f"(set model.num_classes={len(class_names)} or the like)"
            )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "net_config"], logger=False)
        # Plain records instead of pickled objects: checkpoints load with weights_only=True.
        self.hparams["net"] = record
        self.hparams["head"] = head
        self.hparams["optimizer"] = describe(optimizer)
        self.hparams["scheduler"] = describe(scheduler)
        self.net = net
        self.head = head
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss = loss_fn(head, label_smoothing)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.train_metrics = stage_metrics(num_classes, confmat=False)
        self.val_metrics = stage_metrics(num_classes, confmat=True)
        self.test_metrics = stage_metrics(num_classes, confmat=True, per_class=True)
        self.confmats: dict[str, torch.Tensor] = {}  # last computed (C, C) matrix per stage, rows = actual
        self.per_class: dict[str, dict[str, torch.Tensor]] = {}  # stage -> precision/recall/f1, (C,) each
        self.raw_steps = False  # decided in on_train_start

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) logits -> (B, C) class probabilities summing to 1, as the head defines them."""
        return probabilities(logits, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}

    def on_train_start(self) -> None:
        self.raw_steps = raw_steps_allowed(self.trainer, self)

    def training_step(self, chunk: list[Batch], batch_idx: int) -> None:
        opt = self.optimizers()
        scheduler = self.lr_schedulers()
        raw_opt = opt.optimizer if self.raw_steps else None
        losses, preds = [], []
        for x, y in chunk:
            logits = self.net(x)  # (B, C)
            loss = self.loss(logits, y)
            if raw_opt is not None:  # same effect as the wrapped calls below, ~60 us cheaper (see raw_steps)
                raw_opt.zero_grad(set_to_none=True)
                loss.backward()
                raw_opt.step()
            else:
                opt.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                opt.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
            preds.append(logits.detach().argmax(-1))
        if raw_opt is not None:
            count_optimizer_steps(self.trainer, len(chunk))
        sizes = torch.tensor([len(y) for _, y in chunk], dtype=torch.float32, device=self.device)  # (K,)
        losses_t = torch.stack(losses)  # (K,)
        self.train_metrics["loss"].update(losses_t, sizes)
        self.train_metrics["acc"].update(torch.cat(preds), torch.cat([y for _, y in chunk]))
        chunk_loss = (losses_t * sizes).sum() / sizes.sum()
        # One host sync per chunk, which the logger below makes anyway: a diverged run stops
        # within one logging interval instead of training on NaN weights to the end.
        if not torch.isfinite(chunk_loss):
            raise NonFiniteLossError(
                f"train/loss_step is {chunk_loss.item()} at step {self.global_step} (epoch {self.current_epoch}): "
                "training diverged; lower optimizer.lr or check the data"
            )
        self.log("train/loss_step", chunk_loss, on_step=True, prog_bar=True, batch_size=int(sizes.numel()))
        self._log_step()

    def _log_step(self) -> None:
        # Lightning's x-axis counts Lightning steps (chunks); log optimizer steps instead.
        epoch_end = self._in_epoch_end()  # the same on every rank: "max" only silences Lightning's DDP warning
        self.log(
            "step",
            float(self.global_step),
            on_step=not epoch_end,
            on_epoch=epoch_end,
            sync_dist=epoch_end,
            reduce_fx="max",
        )

    def _in_epoch_end(self) -> bool:
        return self._current_fx_name is not None and self._current_fx_name.endswith("epoch_end")

    def _eval_step(self, metrics: nn.ModuleDict, batch: Batch) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)  # (B, C)
        metrics["loss"].update(self.loss(logits, y), len(y))
        preds = logits.argmax(-1)
        for name in ("acc", "confmat", "per_class"):
            if name in metrics:
                metrics[name].update(preds, y)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(self.val_metrics, batch)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # The probabilities go to callbacks (mnistlab.evaluation.TestReport collects the worst mistakes).
        return self.probabilities(self._eval_step(self.test_metrics, batch)).detach()  # (B, C)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self.net(x))  # (B, C)

    def _log_epoch(self, stage: str, metrics: nn.ModuleDict) -> None:
        for name, metric in metrics.items():
            value = metric.compute()  # synchronised across processes by torchmetrics
            if name == "confmat":
                self.confmats[stage] = value.cpu()
            elif name == "per_class":
                self.per_class[stage] = {k: v.cpu() for k, v in value.items()}
                for k, v in value.items():
                    # Unweighted mean over classes; equal on every rank (see below).
                    self.log(f"{stage}/{k}_macro", v.mean(), sync_dist=True, reduce_fx="max")
            else:
                # Already equal on every rank; "max" of equal values keeps them exact and tells
                # Lightning they are synchronised (no per-epoch sync_dist warning under DDP).
                self.log(f"{stage}/{name}", value, prog_bar=stage != "train", sync_dist=True, reduce_fx="max")
            metric.reset()
        self._log_step()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train", self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            for metric in self.val_metrics.values():
                metric.reset()
            return
        self._log_epoch("val", self.val_metrics)
        self._log_confmat_image("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics)
        self._log_confmat_image("test")

    def _log_confmat_image(self, stage: str) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger) and self.trainer.is_global_zero:
                title, tag = f"{stage} confusion matrix", f"{stage}/confusion_matrix"
                if stage == "val":  # every epoch: Pillow draws it in ~5 ms instead of matplotlib's ~170 ms
                    from mnistlab.confmat_image import confusion_matrix_image

                    image = confusion_matrix_image(self.confmats[stage], self.class_names, title)  # (H, W, 3)
                    logger.experiment.add_image(tag, image, self.global_step, dataformats="HWC")
                else:
                    from mnistlab.viz import confusion_matrix_figure  # matplotlib only when drawing

                    fig = confusion_matrix_figure(self.confmats[stage], self.class_names, title)
                    logger.experiment.add_figure(tag, fig, self.global_step)
