"""The run's hyperparameters as a person compares them: a short, flat record for TensorBoard and MLflow,
and its HParams-tab record with the run's final metrics (``log_hparams``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mnistlab.config_keys import PLACEMENT

if TYPE_CHECKING:
    from pathlib import Path

    import lightning.pytorch as pl

Scalar = bool | int | float | str

# The metrics every run reports; TensorBoard's HParams tab compares runs on these.
SUMMARY_METRICS = ("test/acc", "test/loss", "val/acc_best", "val/loss_best")
# The file in which Lightning's TensorBoardLogger keeps a run's record (TensorBoardLogger.NAME_HPARAMS_FILE).
HPARAMS_FILE = "hparams.yaml"
# TensorBoard's HParams table and MLflow's run table stay readable up to about this many columns.
MAX_HPARAMS = 25
# Override keys (prefixes) of groups and switches that never hold a hyperparameter; the placement settings
# (mnistlab.config_keys: where, how fast or how verbosely to run) are left out too, unless a sweep varies one.
NOT_HPARAMS = ("hydra", "paths", "callbacks", "resume", "data.verify")
# Scheduler arguments that are copies of other settings: one_cycle's max_lr is ${optimizer.lr}.
SCHEDULER_COPIES = frozenset({"max_lr"})
# Model arguments that the dataset decides, not the user.
MODEL_GIVEN = frozenset({"num_classes"})
# Optimizer arguments that pick torch's implementation of the same update, not the update.
OPTIMIZER_IMPLEMENTATION = frozenset({"fused", "foreach", "capturable"})
# System arguments that pick how the same step runs (a CUDA graph or eager), not what it computes.
SYSTEM_IMPLEMENTATION = frozenset({"cuda_graph"})
# System arguments of distillation, recorded only for a run that has a teacher.
DISTILLATION = frozenset({"teacher", "temperature", "alpha"})
# Run settings recorded whatever the overrides, in this order ("group.name"; no group: the top level).
RUN_KEYS = (
    "data.batch_size",
    "trainer.max_epochs",
    "data.val_size",
    "data.folds",
    "data.fold",
    "data.augment",
    "data.normalize",
    "trainer.precision",
    "trainer.devices",
    "trainer.strategy",
    "seed",
    "data.dataset",
)


def run_hparams(
    config: Mapping[str, Any],
    overrides: Sequence[str] = (),
    choices: Mapping[str, str | None] | None = None,
    hidden: Sequence[str] = PLACEMENT,
) -> dict[str, Scalar]:
    """The run's meaningful hyperparameters, at most ``MAX_HPARAMS``, under their config keys.

    Names are the keys a user types on the command line (``optimizer.lr``), and a config
    group is named by its choice (``model: hidden``, ``optimizer: adamw``). No ``_target_``,
    no paths, no callback or logger settings: the full config stays in ``.hydra/``.

    Args:
        config: The composed config as plain containers (resolved).
        overrides: The command line's overrides (Hydra's task overrides, e.g.
            ``["optimizer.lr=0.01", "model=linear"]``); their keys come first, so a sweep's
            swept keys lead the table.
        choices: Hydra's config-group choices (``hydra.runtime.choices``: ``{"model": "hidden"}``),
            which name the groups; without them a group is named by its ``_target_`` class.
        hidden: The override keys left out besides ``NOT_HPARAMS``: those the run's folder name leaves out (Hydra's
            ``exclude_keys``), the placement keys but those its sweep varies.

    Returns:
        ``{"optimizer.lr": 0.001, "model": "hidden", ...}``: bools, numbers and strings.
    """
    record: dict[str, Scalar] = {}
    for override in overrides:
        key, value = _override(override)
        if key and not key.startswith((*NOT_HPARAMS, *hidden)):
            found = _select(config, key)
            # A group given on the command line (model=linear) is named by its choice, as in _core.
            record[key] = _scalar(
                found if found is not _MISSING else value, key, (choices or {}).get(key.replace(".", "/"))
            )
    for key, value in _core(config, choices or {}):
        record.setdefault(key, value)
    return dict(list(record.items())[:MAX_HPARAMS])


_MISSING = object()


def _override(text: str) -> tuple[str, str]:
    """``"+data/augment@x=affine"`` -> ``("data.augment", "affine")``; deletions (``~key``) -> ``("", "")``."""
    if text.startswith("~"):
        return "", ""
    key, _, value = text.partition("=")
    return key.lstrip("+").split("@")[0].replace("/", "."), value


def _select(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _name(node: Mapping[str, Any], choice: str | None = None) -> str:
    """A config group's short name: its choice (``hidden``) or the last part of ``_target_`` (``AdamW`` -> adamw)."""
    if choice:
        return choice
    return str(node.get("_target_", "?")).rsplit(".", 1)[-1].lower()


def _settings(node: Any, skip: frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
    """A node's own plain settings: no ``_target_``-like keys, sub-nodes or paths."""
    if not isinstance(node, Mapping):
        return []
    return [
        (k, v)
        for k, v in node.items()
        if not k.startswith("_") and k not in skip and not isinstance(v, Mapping) and not _is_path(v)
    ]


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or "\\" in value)


def _scalar(value: Any, key: str = "", choice: str | None = None) -> Scalar:
    if isinstance(value, Mapping):
        if key.endswith("augment"):  # a set of ranges: "degrees=5.0 translate=0.05 scale=0.05"
            return " ".join(f"{k}={v}" for k, v in _settings(value)) or "none"
        return _name(value, choice)
    if value is None:
        return "none"
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _core(config: Mapping[str, Any], choices: Mapping[str, str | None]) -> list[tuple[str, Scalar]]:
    """Every run's hyperparameters, in the order a reader looks for them; absent keys are skipped."""
    items: list[tuple[str, Any]] = []
    groups = (("model", MODEL_GIVEN), ("system", SYSTEM_IMPLEMENTATION), ("optimizer", OPTIMIZER_IMPLEMENTATION))
    for group, skip in groups:
        node = config.get(group)
        if isinstance(node, Mapping) and "_target_" in node and group != "system":
            items.append((group, _name(node, choices.get(group))))
        if group == "system" and isinstance(node, Mapping):
            # The teacher is a path, which records leave out elsewhere; without one, T and alpha mean nothing.
            skip = skip | (DISTILLATION if not node.get("teacher") else frozenset())
            items += [("system.teacher", node["teacher"])] if node.get("teacher") else []
        items += [(f"{group}.{k}", v) for k, v in _settings(node, skip)]
    scheduler = config.get("scheduler")
    named = _name(scheduler, choices.get("scheduler")) if isinstance(scheduler, Mapping) else "none"
    items.append(("scheduler", named))
    items += [(f"scheduler.{k}", v) for k, v in _settings(scheduler, SCHEDULER_COPIES)]
    data, trainer = config.get("data") or {}, config.get("trainer") or {}
    nodes = {"data": data, "trainer": trainer, "": config}
    for key in RUN_KEYS:
        group, _, name = key.rpartition(".")
        node = nodes[group]
        if key in ("data.folds", "data.fold") and data.get("folds") is None:
            continue  # no cross-validation: no fold to name
        if key == "trainer.strategy" and node.get(name) == "auto":
            continue  # Lightning's default, in every trainer config: recorded only when a run chose one
        if name in node or key == "data.augment":  # no augment node: no augmentation
            items.append((key, node.get(name)))
    return [(k, _scalar(v, k)) for k, v in items]


def read_hparams_file(run_dir: Path) -> dict[str, Scalar]:
    """The record in a run folder's ``hparams.yaml``; {} where there is none, or none readable."""
    import yaml

    try:
        record = yaml.safe_load((run_dir / HPARAMS_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return dict(record) if isinstance(record, dict) else {}


def log_hparams(
    trainer: pl.Trainer,
    hparams: dict[str, Any],
    metrics: dict[str, float],
    config: dict[str, Any] | None = None,
    columns: bool = True,
) -> None:
    """Writes the HParams-tab record with the run's real final metrics (no ``hp_metric`` placeholder).

    ``hparams`` is the short record of ``mnistlab.hparams.run_hparams``; the full composed
    ``config`` goes into a text entry (``config``) beside it. ``columns``: whether the record also
    names the HParams tab's columns (its "experiment"); a sweep's runs leave that to the sweep,
    whose one experiment names every run's keys (``mnistlab.sweeps.hparams_columns``).
    """
    import yaml
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    from mnistlab.lightning_private import file_writer
    from mnistlab.tb_writers import tensorboard_writers

    values = {k: v for k, v in metrics.items() if k in SUMMARY_METRICS}
    for writer in tensorboard_writers(trainer):
        # The metric values themselves are the scalars already logged under these tags.
        for k, v in values.items():
            if k not in ("test/acc", "test/loss"):
                writer.add_scalar(k, v, trainer.global_step)
        experiment, *session = hparams_summary(hparams, values)
        for summary in [experiment, *session] if columns else session:
            file_writer(writer).add_summary(summary)
        if config is not None:  # indented: a Markdown code block in TensorBoard's text tab
            text = yaml.safe_dump(config, sort_keys=False)
            writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), trainer.global_step)
        writer.flush()
