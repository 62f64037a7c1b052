"""Callbacks that turn the test stage into files and pictures, and show the training data once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from mnistlab.atomic_files import write_atomic
from mnistlab.evaluation.report import TestResult
from mnistlab.figures import confusion_matrix_report, image_grid, png
from mnistlab.lightning_private import logging_step
from mnistlab.systems import Classifier
from mnistlab.systems.losses import network_probabilities, probability_outputs
from mnistlab.tb_writers import tensorboard_writers


class SampleImages(pl.Callback):
    """Logs a labelled grid of the first training images once, as ``train/samples``.

    Args:
        count: Number of images in the grid.
    """

    def __init__(self, count: int = 48) -> None:
        self.count = count

    def on_train_start(self, trainer: pl.Trainer, pl_module: Classifier) -> None:
        train_set = getattr(trainer.datamodule, "train_set", None)
        writers = tensorboard_writers(trainer)
        if train_set is None or not writers or _continues_its_folder(trainer):  # once, not again on resume
            return
        images, labels = (t[: self.count] for t in train_set)  # (K, 1, 28, 28), (K,)
        names = [pl_module.class_names[i] for i in labels.tolist()]
        grid = image_grid(images, names, title="Training samples")  # (H, W, 3)
        for writer in writers:
            writer.add_image("train/samples", grid, 0, dataformats="HWC")


def _continues_its_folder(trainer: pl.Trainer) -> bool:
    """Whether the fit resumes a checkpoint of its own run folder (``resume=``), whose first launch logged the samples.

    Not ``global_step > 0``: a new run from another run's checkpoint (``ckpt_path=``) starts a folder of its own.
    """
    if not trainer.ckpt_path or trainer.log_dir is None:
        return False
    return Path(trainer.log_dir).resolve() in Path(trainer.ckpt_path).resolve().parents


class TestReport(pl.Callback):
    """Writes the test stage's report into ``output_dir`` and TensorBoard.

    Files: ``confusion_matrix.png`` (counts and row-normalised), ``confusion_matrix.csv`` and
    ``per_class.csv`` (precision, recall, F1, support, macro row); ``metrics.json`` is the caller's
    (``atomic_files.write_metrics``), which knows the fit's numbers too.
    TensorBoard: both tables as text and a grid of the most confidently misclassified test
    images. The system's own test metrics are the source, so the numbers equal ``test/acc``.

    Args:
        output_dir: The run folder; None writes no files (TensorBoard only).
        num_mistakes: How many misclassified images the grid shows.
    """

    def __init__(self, output_dir: str | None = None, num_mistakes: int = 32) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.num_mistakes = num_mistakes
        self.result: TestResult | None = None
        self._mistakes: tuple[torch.Tensor, ...] = ()
        self._returns: str | None = None  # the network's final nn.Softmax or nn.Sigmoid, if it returns probabilities

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: Classifier) -> None:
        self._mistakes = ()
        self._returns = probability_outputs(pl_module.net)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: Classifier,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        x, y = batch
        if self._returns is not None:  # the system's head took its probabilities for logits: the grid shows its own
            outputs = network_probabilities(pl_module.net(x), pl_module.head, self._returns)
        confidence, pred = outputs.max(-1)  # (B,), (B,)
        # The class test/acc counts is the logits' argmax: where a saturated sigmoid head's probabilities tie at
        # 1.0 in float32, theirs is the first of the tied classes. The few tied images are run again for it.
        if (tied := (outputs == confidence.unsqueeze(-1)).sum(-1) > 1).any():
            pred[tied] = pl_module.net(x[tied]).argmax(-1)
        wrong = pred != y
        # Keep a running top-k of confident mistakes: k rows at most, on the device.
        found = (confidence[wrong], x[wrong], y[wrong], pred[wrong])
        if self._mistakes:
            found = tuple(torch.cat(pair) for pair in zip(self._mistakes, found, strict=True))
        keep = found[0].topk(min(self.num_mistakes, len(found[0]))).indices
        self._mistakes = tuple(t[keep] for t in found)

    def on_test_end(self, trainer: pl.Trainer, pl_module: Classifier) -> None:
        # Not on_test_epoch_end: callbacks run before the system's, which computes the metrics.
        metrics = trainer.callback_metrics
        self.result = TestResult(
            accuracy=float(metrics["test/acc"]),
            loss=float(metrics["test/loss"]),
            confmat=pl_module.confmats["test"],
            per_class=pl_module.per_class["test"],
            class_names=list(pl_module.class_names),
        )
        mistakes = self._whole_test_sets_mistakes(trainer, pl_module)  # on every rank: a collective under DDP
        if not trainer.is_global_zero:
            return
        if self.output_dir is not None and not trainer.fast_dev_run:  # a smoke test's few batches are no report
            self.result.write(self.output_dir)
            fig = confusion_matrix_report(self.result.confmat, self.result.class_names, "Test confusion matrix")
            write_atomic(self.output_dir / "confusion_matrix.png", png(fig))
        step = logging_step(trainer)  # the step of the test scalars, so the report sits beside them
        for writer in tensorboard_writers(trainer):
            writer.add_text("test/report", self.result.markdown(), step)
            if mistakes:
                confidence, images, labels, preds = (t.cpu() for t in mistakes)
                names = pl_module.class_names
                titles = [
                    f"true {names[t]}\npred {names[p]} ({c:.1%})"
                    for t, p, c in zip(labels.tolist(), preds.tolist(), confidence.tolist(), strict=True)
                ]
                grid = image_grid(images, titles, title="Most confident mistakes")  # (H, W, 3)
                writer.add_image("test/misclassified", grid, step, dataformats="HWC")

    def _whole_test_sets_mistakes(self, trainer: pl.Trainer, pl_module: Classifier) -> tuple[torch.Tensor, ...]:
        """The most confident mistakes of the whole test set; under DDP each rank kept those of its own share.

        Gathered as ``test/acc`` and the confusion matrix are: the grid showed rank 0's share alone.
        """
        if trainer.world_size == 1 or not self._mistakes:
            return self._mistakes
        confidence, *rest = self._mistakes
        missing = self.num_mistakes - len(confidence)
        # The gather takes equal shapes from every rank: rows past a rank's own mistakes get confidence -1.
        padded = [torch.cat([confidence, confidence.new_full((missing,), -1.0)])]
        padded += [torch.cat([t, t.new_zeros((missing, *t.shape[1:]))]) for t in rest]
        gathered = [t.flatten(0, 1) for t in pl_module.all_gather(tuple(padded))]  # (world_size * k, ...) each
        keep = gathered[0].topk(self.num_mistakes).indices
        keep = keep[gathered[0][keep] >= 0]
        return tuple(t[keep] for t in gathered)
