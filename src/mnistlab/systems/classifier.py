"""The LightningModule that trains any network of ``mnistlab.models``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from torch import nn

from mnistlab import checkpoint_records
from mnistlab.checkpoint_records import build_network, check_float32, factory_from_record, network_record, output_width
from mnistlab.config_checks import check_number
from mnistlab.data.loaders import Batch
from mnistlab.errors import ConfigError
from mnistlab.lightning_private import align_optimizer_step_counts, restore_loader_position, should_update_logs
from mnistlab.systems import schedules
from mnistlab.systems.classes import check_class_names, take_data_classes
from mnistlab.systems.distillation import Teacher, TrainingLoss, check_teacher
from mnistlab.systems.divergence import DivergenceCheck, check_finite_weights
from mnistlab.systems.losses import HEADS, Head, loss_fn, probabilities, warn_of_probability_outputs
from mnistlab.systems.metrics import (
    TRAIN_METRICS_KEY,
    batch_weights,
    log_confmat_image,
    log_epoch,
    metric_states,
    restore_metric_states,
    stage_metrics,
)
from mnistlab.systems.one_image_batch import check_one_image_batches
from mnistlab.systems.optimizers import NOTEBOOK_ADAM, OptimizerFactory, SchedulerFactory, check_factories, describe

if TYPE_CHECKING:
    from mnistlab.engine import Engine

StepOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # one batch's loss (), predictions (B,), labels (B,)


class Classifier(pl.LightningModule):
    """Owns the head, the loss, the metrics, the optimizer and the logging of an image classifier.

    The network is any ``nn.Module`` that maps (B, 1, 28, 28) images to (B, C) logits; the
    system turns them into probabilities (``head``) and takes C and the class names from the data.

    Out of the box it is a plain Lightning module: automatic optimization, one ``(images,
    labels)`` batch per ``training_step``. Built with an ``engine`` whose ``fast_path`` is set
    (``mnistlab.engine``), its ``training_step`` delegates to that path instead, which takes
    several batches per step (manual optimization). Either way the training results go through
    ``_record_training``: the hot loop never waits on the host.

    Checkpoints hold plain values only (they load with ``torch.load(weights_only=True)``): the network's record
    ``{"_target_": class path, **arguments}`` and the optimizer's and scheduler's ``{"target": ..., **kwargs}``
    (``mnistlab.checkpoint_records``), which ``Classifier.load_from_checkpoint(path)`` passes back to ``__init__``.

    Args:
        net: The network, or its record (as ``load_from_checkpoint`` passes it).
        optimizer: Partial optimizer, called with the parameters (or its record).
        scheduler: Optional partial LR scheduler (or its record), called with the optimizer and
            ``total_steps`` (``trainer.estimated_stepping_batches``) and stepped after every optimizer step.
        label_smoothing: Cross-entropy label smoothing (softmax head only).
        class_names: Names for tables and plots, one per logit; digits by default.
        head: How logits become probabilities: ``softmax`` (trained with cross-entropy) or
            ``sigmoid`` (the notebook's ``Dense(10, sigmoid)``, trained with Keras' sparse
            categorical cross-entropy; see ``mnistlab.systems.losses``).
        net_config: The resolved config ``net`` was built from (``_target_`` naming its class,
            and plain keyword arguments), recorded so that a checkpoint can rebuild the network.
            None records the class alone (rebuilt with its default arguments).
        cuda_graph: Under the engine's fast path on a GPU, record the optimizer step once as a
            CUDA graph and replay it, where that is exact (``mnistlab.engine.graph``). A switch of
            how the step runs, not of what it computes, so checkpoints do not record it.
        engine: The run's engine (``mnistlab.engine.choose_engine``); None is Lightning's
            automatic optimization, as is an engine without a fast path.
        teacher: A frozen trained model to distil from (``mnistlab.teachers.load_teacher``);
            checkpoints record where it came from, never its weights (``mnistlab.systems.distillation``).
        temperature: T of the teacher's soft targets.
        alpha: The weight of the teacher's term in the training loss (0: the labels alone).
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
        cuda_graph: bool = True,
        engine: Engine | None = None,
        teacher: Teacher | None = None,
        temperature: float = 4.0,
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        self._net_rebuilt = isinstance(net, Mapping)  # from a record, not handed in: on_load_checkpoint checks it
        if isinstance(net, Mapping):  # a checkpoint's record
            record = dict(net)
            net = build_network(record)
        else:
            record = network_record(net, net_config)
        if isinstance(optimizer, Mapping):
            optimizer = factory_from_record(optimizer, torch.optim.Optimizer, "checkpoint optimizer")
        if isinstance(scheduler, Mapping):
            scheduler = factory_from_record(scheduler, torch.optim.lr_scheduler.LRScheduler, "checkpoint scheduler")
        if head not in HEADS:
            raise ConfigError(f"system.head={head!r} must be one of {list(HEADS)}")
        optimizer_record = describe(optimizer, "optimizer")
        if optimizer_record and "lr" in optimizer_record:
            check_number("optimizer.lr", optimizer_record["lr"], low=0, low_open=True)
        check_number("system.label_smoothing", label_smoothing, low=0, high=0.999)
        check_factories(optimizer, scheduler)
        num_classes = output_width(net)
        check_class_names(class_names, num_classes)
        # How the step runs (cuda_graph, engine) is no hyperparameter: checkpoints do not record it.
        if teacher is not None:
            check_teacher(teacher, num_classes, class_names, head)
        ignore = ["net", "optimizer", "scheduler", "net_config", "cuda_graph", "engine", "teacher"]
        self.save_hyperparameters(ignore=ignore, logger=False)
        # Plain records instead of pickled objects: checkpoints load with weights_only=True.
        self.hparams["net"] = record
        self.hparams["optimizer"] = optimizer_record
        self.hparams["scheduler"] = describe(scheduler, "scheduler")
        self.net = net
        self.head = head
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss = loss_fn(head, label_smoothing)  # on the labels: validation and test
        self.training_loss = TrainingLoss(self.loss, teacher, temperature, alpha)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.train_metrics = stage_metrics(num_classes, confmat=False, checks=False)
        self.val_metrics = stage_metrics(num_classes, confmat=True)
        self.test_metrics = stage_metrics(num_classes, confmat=True, per_class=True)
        self.confmats: dict[str, torch.Tensor] = {}  # last computed (C, C) matrix per stage, rows = actual
        self.per_class: dict[str, dict[str, torch.Tensor]] = {}  # stage -> precision/recall/f1, (C,) each
        self.fast_path = engine.fast_path(cuda_graph) if engine is not None else None
        self.automatic_optimization = self.fast_path is None
        self._pending: list[StepOutput] = []  # batches whose training-metric updates are still to be made
        self._unchecked_loss: torch.Tensor | None = None  # a logged step's loss, checked at its batch end

    @property
    def example_input_array(self) -> torch.Tensor:
        """One image, (1, 1, 28, 28): the model summary then shows real FLOPs and shapes instead of a column of 0.

        In the parameters' dtype, which Lightning's precision plugins set (float64 under ``trainer.precision=64``):
        the summary feeds this tensor to the network as it is.
        """
        first = next(self.net.parameters(), None)
        return torch.zeros(1, 1, 28, 28, dtype=first.dtype if first is not None else torch.float32)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) logits -> (B, C) class probabilities summing to 1, as the head defines them."""
        return probabilities(logits, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=schedules.total_steps(self.trainer))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        take_data_classes(self)  # a system built in Python never saw the data
        check_float32(self.net, str(self.trainer.precision))  # a Trainer of one's own: no compose checked it
        # ddp_spawn on the CPU hands every process the same shared memory for each tensor of the pickled
        # module: weights and metric states would be stepped and counted once per process. Own copies here.
        for tensor in [*self.parameters(), *self.buffers()]:
            if tensor.is_shared():
                tensor.data = tensor.data.clone()
        for metrics in (self.train_metrics, self.val_metrics, self.test_metrics):
            for metric in metrics.values():
                metric.reset()  # fresh state tensors, never shared

    def on_fit_start(self) -> None:
        self.training_loss.to(self.device)  # the teacher, which is no submodule, to the training device
        if self.trainer.is_global_zero:  # once, not once per DDP process
            warn_of_probability_outputs(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The loss is checked at logging steps only; a checkpoint due between two of them (last.ckpt's
        # every_n_steps, a best.ckpt after a late divergence) must not keep diverged weights to resume from.
        check_finite_weights(self.net, self.global_step, self.current_epoch)
        checkpoint_records.note_network(checkpoint, self.hparams.net, self.net)
        teacher = self.training_loss.teacher
        if teacher is not None:  # provenance only: evaluating the student never reads it
            checkpoint["teacher"] = {**teacher.provenance(), "temperature": self.hparams.temperature,
                                     "alpha": self.hparams.alpha}  # fmt: skip
        # Mid-epoch, the epoch's batches so far: a resumed epoch's train/loss and train/acc count them too. Under
        # DDP one file cannot hand each process its own share (as LastCheckpoint's gradients): it counts its own.
        if self.trainer.world_size == 1:
            self._update_train_metrics()
            checkpoint[TRAIN_METRICS_KEY] = metric_states(self.train_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._net_rebuilt:  # before Lightning loads the weights into a guessed network
            checkpoint_records.check_rebuilt(checkpoint, self.hparams.net, self.net)
        restore_metric_states(self.train_metrics, checkpoint.get(TRAIN_METRICS_KEY) or {})

    def on_train_start(self) -> None:
        # configure_optimizers reads trainer.estimated_stepping_batches, which makes Lightning build the training
        # loader before a resumed checkpoint is restored and never hand it its saved position: done here instead.
        restore_loader_position(self.trainer)
        align_optimizer_step_counts(self.trainer)  # resumes a checkpoint of either optimization mode
        check_one_image_batches(self.trainer, self.net)  # BatchNorm1d: before the first batch, not an epoch later
        if self.fast_path is not None:
            self.fast_path.on_train_start(self)

    def on_train_end(self) -> None:
        if self.fast_path is not None:
            self.fast_path.on_train_end()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.fast_path is not None:  # several batches per step, one optimizer step each (mnistlab.engine)
            self._record_training(self.fast_path.training_step(self, batch))
            return None
        x, y = batch
        logits = self.net(x)  # (B, C)
        loss = self.training_loss(logits, y, x)
        self._record_training([(loss.detach(), logits.detach().argmax(-1), y)])
        return loss

    def _record_training(self, outputs: list[StepOutput]) -> None:
        """Keeps the batches' results for the epoch metrics; at Lightning's logging steps, logs the last loss.

        Metric updates cost ~40 us each in torchmetrics' wrappers, so they are made for all kept batches at once,
        at the logging steps and the epoch's end (the epoch values are the same). ``self.log`` costs about 0.5 ms,
        a quarter of a per-step batch on the CPU, and loggers receive on-step values only every
        ``log_every_n_steps`` batches, so the loss is logged at those steps alone. Lightning reads it to the host
        after the step, as ``DivergenceCheck`` does, so the step itself never waits for the device.
        """
        self._pending.extend(outputs)
        if should_update_logs(self.trainer):
            loss, _, y = outputs[-1]
            self._unchecked_loss = loss
            self.log("train/loss_step", loss, prog_bar=True, batch_size=len(y))
            self._update_train_metrics()

    def _update_train_metrics(self) -> None:
        if not self._pending:
            return
        losses, preds, targets = zip(*self._pending, strict=True)
        self.train_metrics["loss"].update(torch.stack(losses), batch_weights(targets))  # (K,) weighted by size
        self.train_metrics["acc"].update(torch.cat(preds), torch.cat(targets))
        self._pending.clear()

    def take_logged_loss(self) -> torch.Tensor | None:
        """The loss logged at this step, once (None at other steps); ``DivergenceCheck`` reads it."""
        loss, self._unchecked_loss = self._unchecked_loss, None
        return loss

    def configure_callbacks(self) -> list[pl.Callback]:
        # Once per Trainer: returned again for trainer.test, Lightning would announce it replaces itself.
        if any(isinstance(cb, DivergenceCheck) for cb in self.trainer.callbacks):
            return []
        return [DivergenceCheck()]

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

    def on_train_epoch_end(self) -> None:
        self._update_train_metrics()
        log_epoch(self, "train", self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            for metric in self.val_metrics.values():
                metric.reset()
            return
        self.confmats["val"] = log_epoch(self, "val", self.val_metrics)["confmat"]
        log_confmat_image(self.trainer, self.confmats["val"], self.class_names, "val")

    def on_test_epoch_end(self) -> None:
        kept = log_epoch(self, "test", self.test_metrics)
        self.confmats["test"], self.per_class["test"] = kept["confmat"], kept["per_class"]
        log_confmat_image(self.trainer, self.confmats["test"], self.class_names, "test")
