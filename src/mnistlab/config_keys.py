"""The one list of settings that say how or where a run goes, not what it trains; the other lists derive from it.

- Hydra leaves ``PLACEMENT`` out of a sweep job's folder name and the summary's overrides column
  (``exclude_keys: ${mnistlab.placement_keys:}`` in ``conf/hydra/default.yaml``).
- The hyperparameter record (``mnistlab.hparams.NOT_HPARAMS``) skips ``PLACEMENT`` and the groups that
  never hold a hyperparameter.
- ``resume=RUN_DIR`` (``mnistlab.resume``) passes over ``PRESENTATION``: they change nothing a
  continued run computes.
"""

from __future__ import annotations

# How a run shows its progress and where it finds its data.
PRESENTATION = ("callbacks.progress_bar.refresh_rate", "paths.data_dir")
# The hardware a run takes: a killed sweep may continue on other hardware.
HARDWARE = ("trainer.accelerator", "trainer.devices", "trainer.num_nodes")
# Where a run reads and writes, on which hardware, and how short a check run is: jobs of a sweep that
# differ only in these are the same experiment.
PLACEMENT = (
    *PRESENTATION,
    "callbacks.optuna_pruning.trial",
    "paths.mlflow_dir",
    "logger",
    "logger.mlflow.tracking_uri",
    "data.root",
    "data.download",
    "ckpt_path",
    "resume",
    "hparams_search",
    *HARDWARE,
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
)


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+data.fold=1`` and ``~seed`` -> ``data.fold`` and ``seed``."""
    return override.split("=", 1)[0].lstrip("+~")


def path_override(key: str, path: object) -> str:
    """``key=path`` as Hydra reads it back: a path holding ``=`` or ``,`` (a sweep's job folder, such as
    ``3_cv=5,model=linear``) goes in double quotes, which Hydra's override grammar needs there."""
    text = str(path)
    if not any(c in text for c in "=,[]{}() '\""):
        return f"{key}={text}"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


def placement_keys() -> list[str]:
    """Resolver ``${mnistlab.placement_keys:}``: ``PLACEMENT`` for Hydra's ``override_dirname.exclude_keys``."""
    return list(PLACEMENT)
