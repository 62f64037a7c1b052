"""A network that cannot train on one image, in a run whose epochs end with a one-image batch: refused up front.

``nn.BatchNorm1d`` needs two or more values per channel in training mode. When the training set
leaves one image for every epoch's last batch (54,977 images at batch 32), such a network would
fail there, an epoch's work later, with torch's ``ValueError``. The system checks at the start of
training (``Classifier.on_train_start``) instead.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from mnistlab.checkpoint_records import blank_image, class_path
from mnistlab.errors import ConfigError, first_line


def check_one_image_batches(trainer: pl.Trainer, net: nn.Module) -> None:
    """Refuses ``net`` if the fit will train on a one-image batch and ``net`` cannot.

    Raises:
        ConfigError: When a training-mode forward pass of one (1, 1, 28, 28) image fails with a ``ValueError``.
    """
    loader: Any = trainer.train_dataloader
    if getattr(loader, "last_batch_size", None) != 1 or not reaches_an_epoch_end(trainer, len(loader)):
        return
    reason = _fails_on_one_image(net)
    if reason is not None:
        raise ConfigError(
            f"the last training batch of every epoch holds 1 image, and {class_path(type(net))} cannot train on one "
            f"({reason}); change data.batch_size so that it holds more"
        )


def reaches_an_epoch_end(trainer: pl.Trainer, batches: int) -> bool:
    """Whether the fit will train the last of an epoch's ``batches`` batches.

    Not when ``limit_train_batches`` or ``overfit_batches`` cut every epoch short, nor when
    ``max_steps`` ends the fit before the end of the epoch it starts (or resumes) in.
    """
    if trainer.num_training_batches < batches:
        return False
    if trainer.max_steps in (-1, None):
        return True
    steps_per_epoch = -(-batches // trainer.accumulate_grad_batches)  # Lightning steps at every epoch's end
    left_in_epoch = steps_per_epoch - trainer.global_step % steps_per_epoch
    return trainer.max_steps - trainer.global_step >= left_in_epoch


def _fails_on_one_image(net: nn.Module) -> str | None:
    """The first line of the ``ValueError`` a training-mode forward of one blank image raises, else None.

    The network is left as it was: its state (batch-norm statistics) is restored, its mode too, and
    the random stream (dropout) is forked, so a run that passes draws the same numbers as before.
    """
    x = blank_image(net)
    state = {key: value.clone() for key, value in net.state_dict().items()}
    training = net.training
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            net.train()(x)
    except ValueError as e:  # BatchNorm's "Expected more than 1 value per channel when training"
        return first_line(e)
    finally:
        net.load_state_dict(state)
        net.train(training)
    return None
