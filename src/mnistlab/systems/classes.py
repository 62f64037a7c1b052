"""The classes a system names and the data it is fitted on must match the network's output width.

The system takes C, the number of classes, from the network's (B, C) logits. ``scripts/train.py`` passes the
data's class names, which are checked here when the system is built; a system built in Python without them is
checked against the Trainer's data module when Lightning sets it up, before a batch runs (a label beyond C would
otherwise stop the first step with torch's ``IndexError: Target 6 is out of bounds``), and takes its names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mnistlab.errors import ConfigError

if TYPE_CHECKING:
    from mnistlab.systems.classifier import Classifier


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


def take_data_classes(system: Classifier) -> None:
    """Checks the classes of the Trainer's data module against the logits; a system without class names takes theirs.

    A system built in Python without ``class_names`` names its classes by digit; fitted or evaluated on
    ``MNISTDataModule(dataset="fashion_mnist")``, its tables, plots, predictions and checkpoints would call a
    coat "4". It takes the data module's names instead, as ``scripts/train.py`` passes them, and records them.
    Data without a data module, or a data module without ``classes``, is not checked: its labels are unknown
    until its batches run.

    Raises:
        ConfigError: When the data module has another number of classes than the network's width.
    """
    trainer = system.trainer
    classes = getattr(trainer.datamodule, "classes", None)
    if classes is None:
        return
    if len(classes) != len(system.class_names):
        raise ConfigError(
            f"the network returns {len(system.class_names)} logits but the data module has {len(classes)} classes "
            f"({type(trainer.datamodule).__name__}.classes); give the network {len(classes)} outputs, "
            f"e.g. num_classes={len(classes)}"
        )
    if system.hparams.get("class_names") is None:  # given names (a script's, a checkpoint's) are kept
        system.class_names = [str(name) for name in classes]
        system.hparams["class_names"] = list(system.class_names)  # so that its checkpoints name them too
