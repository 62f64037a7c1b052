"""The classes a system names and the data it is fitted on must match the network's output width.

The system takes C, the number of classes, from the network's (B, C) logits. ``scripts/train.py`` passes the
data's class names, which are checked here when the system is built; a system built in Python without them is
checked against the Trainer's data module when Lightning sets it up, before a batch runs, where a label beyond
C would otherwise stop the first step with torch's ``IndexError: Target 6 is out of bounds``.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl

from mnistlab.errors import ConfigError


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> None:
    """Refuses class names that are not one per logit.

    Raises:
        ConfigError: When ``class_names`` is given and its length is not ``num_classes``.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(
            f"the network returns {num_classes} logits but there are {len(class_names)} classes "
            f"(set model.num_classes={len(class_names)} or the like)"
        )


def check_data_classes(trainer: pl.Trainer | None, num_classes: int) -> None:
    """Refuses a data module whose ``classes`` (``MNISTDataModule.classes``) are not one per logit.

    Data without a data module, or a data module without ``classes``, is not checked: its labels are unknown
    until its batches run.

    Raises:
        ConfigError: When the Trainer's data module has another number of classes than the network's width.
    """
    classes = getattr(trainer.datamodule, "classes", None) if trainer is not None else None
    if classes is not None and len(classes) != num_classes:
        raise ConfigError(
            f"the network returns {num_classes} logits but the data module has {len(classes)} classes "
            f"({type(trainer.datamodule).__name__}.classes); give the network {len(classes)} outputs, "
            f"e.g. num_classes={len(classes)}"
        )
