"""Range checks that name the setting, its value and what is allowed, in one sentence."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from mnistlab.errors import ConfigError


def check_number(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    finite: bool = False,
) -> None:
    """Raises ``ConfigError`` unless ``value`` is a number in the given range.

    Args:
        key: The config key shown to the user, e.g. ``"optimizer.lr"``.
        value: The value to check.
        integer: Require an int (bools are refused).
        low: Smallest allowed value (or lower bound, see ``low_open``); None for no bound.
        high: Largest allowed value; None for no bound.
        low_open: ``low`` itself is not allowed (``> low`` instead of ``>= low``).
        finite: Refuse ``inf`` where there is no ``high`` (where infinity means nothing, such as a divisor).
    """
    kind = "an integer" if integer else ("a finite number" if finite else "a number")
    if low is not None and high is not None:
        allowed = f"{kind} > {low} and <= {high}" if low_open else f"{kind} in {low}-{high}"
    elif low is not None:
        allowed = f"{kind} {'>' if low_open else '>='} {low}"
    else:
        allowed = f"{kind} <= {high}"
    types = (int,) if integer else (int, float)
    if not isinstance(value, types) or isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not {kind}: must be {allowed}")
    ok = True
    if low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if ok and finite:
        ok = math.isfinite(value)
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")


# Where a key came from, for the message: (its source, e.g. "experiment=speedrun", and what to do), or None.
Origin = Callable[[str], tuple[str, str | None] | None]


def check_targets(tree: Any, prefix: str = "", origin: Origin | None = None) -> None:
    """Raises ``ConfigError`` for a key that the ``_target_`` of its node does not take.

    Walks a plain nested dict/list (a composed config as containers) and checks every node
    that names a ``_target_`` against that callable's signature, so a misspelled key in a
    preset or a ``+key=value`` override fails before any work with the key and the
    accepted names, instead of a ``TypeError`` traceback at build (or, for ``_partial_``
    optimizers, at fit) time.

    Args:
        tree: The config as plain containers.
        prefix: The dotted key of ``tree``.
        origin: Given the dotted key refused, where it came from and the fix (a preset that set it for another
            class than the one chosen), for the message; None: the key alone.
    """
    if isinstance(tree, list):
        for i, item in enumerate(tree):
            check_targets(item, f"{prefix}[{i}]", origin)
        return
    if not isinstance(tree, dict):
        return
    target = tree.get("_target_")
    if isinstance(target, str):
        _check_arguments(prefix, target, tree, origin)
    for key, value in tree.items():
        check_targets(value, f"{prefix}.{key}" if prefix else str(key), origin)


def check_built_groups(cfg: dict[str, Any]) -> None:
    """Refuses an entry of ``callbacks`` or ``logger`` that names no ``_target_`` (Hydra would pass a dict on).

    ``+callbacks.early_stopping.patience=1`` alone adds settings without the class they are for: the run
    failed inside the fit with Lightning's ``Missing key on_exception``.
    """
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, dict) and "_target_" not in node:
                raise ConfigError(
                    f"{group}.{name} names no class: add +{group}.{name}._target_=<its class>, e.g. "
                    + (
                        "lightning.pytorch.callbacks.EarlyStopping"
                        if group == "callbacks"
                        else "lightning.pytorch.loggers.CSVLogger"
                    )
                )


def target_arguments(target: str) -> Mapping[str, inspect.Parameter] | None:
    """The parameters of the callable a ``_target_`` names; None when it cannot be resolved or
    introspected (left for instantiation to report) or when it takes ``**kwargs`` (any key goes)."""
    module, _, name = target.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return params


def _check_arguments(prefix: str, target: str, node: dict[str, Any], origin: Origin | None = None) -> None:
    params = target_arguments(target)
    if params is None:
        return
    for key, value in node.items():
        if not key.startswith("_") and key not in params:
            allowed = ", ".join(p for p in params if p not in ("self", "params"))
            found = origin(f"{prefix}.{key}") if origin is not None else None
            source, fix = found if found is not None else (None, None)
            given = f"{prefix}.{key}={value!r}" + (f" (set by {source})" if source else "")
            raise ConfigError(
                f"{given} is not a setting of {target}; allowed keys: {allowed}" + (f"; {fix}" if fix else "")
            )


def check_devices(trainer: dict[str, Any]) -> None:
    """Refuses ``trainer.devices>1`` with ``accelerator=auto`` on a machine without a GPU.

    Lightning would quietly run that many CPU processes (``trainer=ddp trainer.devices=4`` meant 4 GPUs);
    an explicit ``trainer.accelerator=cpu`` still runs them.
    """
    devices, accelerator = trainer.get("devices"), trainer.get("accelerator")
    count = devices if isinstance(devices, int) else len(devices) if isinstance(devices, (list, tuple)) else 1
    if accelerator != "auto" or count <= 1:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.devices={devices} with trainer.accelerator=auto, but this machine has no GPU: "
            f"add trainer.accelerator=cpu to run {count} CPU processes, or use trainer.devices=1"
        )


def check_trainer_counts(trainer: dict[str, Any]) -> None:
    """Range checks of the Trainer's counts that Lightning leaves to fail later, with a traceback.

    ``check_val_every_n_epoch=0`` divides by zero at the first epoch's end, ``accumulate_grad_batches=0``
    and ``val_check_interval=0`` fail inside the loop, ``limit_test_batches=0`` after the whole fit; a
    negative ``gradient_clip_val`` is taken as no clipping at all, and a negative ``log_every_n_steps`` as
    logging at every batch (Python's ``%``; 0 turns step logging off), which no documented value means.
    ``max_epochs=0`` would test the untrained network as the run's result, and ``max_epochs=-1`` without
    ``max_steps`` would train without end. ``num_sanity_val_steps`` below -1 (-1: all batches) and a negative
    ``min_epochs`` or ``min_steps`` run as if unset, without a word. None (the setting's off value, where
    Lightning has one) passes.
    """
    for key, low in (("log_every_n_steps", 0), ("num_sanity_val_steps", -1), ("min_epochs", 0), ("min_steps", 0)):
        if trainer.get(key) is not None:
            check_number(f"trainer.{key}", trainer[key], integer=True, low=low)
    for key, low in (("check_val_every_n_epoch", 1), ("accumulate_grad_batches", 1)):
        if trainer.get(key) is not None:
            check_number(f"trainer.{key}", trainer[key], integer=True, low=low)
    if (clip := trainer.get("gradient_clip_val")) is not None:
        check_number("trainer.gradient_clip_val", clip, low=0)
    # 0 training batches or steps would test the untrained network as if it were the run's result.
    _check_count_or_fraction("trainer.limit_train_batches", trainer.get("limit_train_batches"))
    # 0 test batches would train the whole run and then fail on a test that returned no metrics.
    _check_count_or_fraction("trainer.limit_test_batches", trainer.get("limit_test_batches"))
    timed = _check_max_time(trainer.get("max_time"))
    if (steps := trainer.get("max_steps")) is not None and steps != -1:
        check_number("trainer.max_steps", steps, integer=True, low=1)
    # max_epochs=-1 is Lightning's unbounded training: bounded by max_steps=N (above) or by max_time.
    elif trainer.get("max_epochs") is not None and not (timed and trainer["max_epochs"] == -1):
        check_number("trainer.max_epochs", trainer["max_epochs"], integer=True, low=1)
    _check_count_or_fraction("trainer.val_check_interval", trainer.get("val_check_interval"))
    for unit in ("epochs", "steps"):  # Lightning stops at the maximum and drops a larger minimum without a word
        least, most = trainer.get(f"min_{unit}"), trainer.get(f"max_{unit}")
        if isinstance(least, int) and isinstance(most, int) and 0 <= most < least:
            raise ConfigError(
                f"trainer.min_{unit}={least} is above trainer.max_{unit}={most}: Lightning stops at the maximum, so "
                f"the minimum would not hold; raise trainer.max_{unit}, or lower trainer.min_{unit}"
            )


def check_schedule_length(trainer: dict[str, Any], scheduler: Any) -> None:
    """Refuses a learning-rate schedule in a run whose length in steps is open (``max_epochs=-1``, ended by
    ``max_time``): the schedule is sized from the run's step count, which is then infinite."""
    open_ended = trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (None, -1)
    if scheduler and open_ended:
        raise open_schedule_error(f"trainer.max_epochs=-1 with trainer.max_time={trainer.get('max_time')!r}")


def open_schedule_error(what: str) -> ConfigError:
    """The refusal of a schedule in a run of open length, ``what`` naming the settings that leave it open; raised
    before any work by ``check_schedule_length``, and by ``mnistlab.systems.schedules.total_steps`` for a Trainer
    built in Python."""
    return ConfigError(
        f"a scheduler sizes its schedule from the run's steps, which {what} leaves open: set trainer.max_steps, or "
        "drop the scheduler"
    )


def _check_max_time(value: Any) -> bool:
    """Whether ``trainer.max_time`` is set, in a form Lightning documents: ``"DD:HH:MM:SS"`` or a dict of
    ``datetime.timedelta``'s keywords (``{minutes: 5}``); anything else failed inside the Trainer, with a traceback."""
    if value is None:
        return False
    if isinstance(value, str) and re.fullmatch(r"\d+:\d+:\d+:\d+", value.strip()):
        return True
    if isinstance(value, Mapping) and value:
        try:
            timedelta(**value)
            return True
        except (TypeError, ValueError, OverflowError):
            pass
    raise ConfigError(
        f"trainer.max_time={value!r} is not a time span: give it as 'DD:HH:MM:SS' (e.g. 00:00:30:00, half an "
        "hour) or as a dict of datetime.timedelta's keywords, e.g. minutes: 30"
    )


def _check_count_or_fraction(key: str, value: Any) -> None:
    """An int is a number of batches (>= 1), a float a fraction of the epoch (> 0, <= 1); anything else
    (None, a time span, a dict) is Lightning's to check."""
    if isinstance(value, int) and not isinstance(value, bool):
        check_number(key, value, integer=True, low=1)
    elif isinstance(value, float):
        check_number(key, value, low=0, high=1.0, low_open=True)


# Lightning's seed_everything(None) takes $PL_GLOBAL_SEED, else 0: every such run, and every job of a sweep, the same.
SEED_NULL = (
    "seed=null: Lightning would seed the run with 0 (or $PL_GLOBAL_SEED), the same for every such run, not draw "
    "a seed of its own: give seed=N, an integer in 0-4294967295 (a sweep over seeds: -m seed=1,2,3)"
)


def check_seed(seed: Any) -> None:
    """Refuses a ``seed`` numpy cannot take (Lightning seeds it too), and ``null`` (``SEED_NULL``).

    Before, ``seed=null`` trained until the data module's setup inside ``trainer.fit``, whose split needs a
    number (``data.seed`` is ``${seed}``): ``RuntimeError: manual_seed expected a long, but got NoneType``.
    """
    if seed is None:
        raise ConfigError(SEED_NULL)
    check_number("seed", seed, integer=True, low=0, high=2**32 - 1)


def check_ckpt_path(ckpt_path: Any) -> None:
    """Refuses an empty ``ckpt_path`` (``ckpt_path=$CKPT``, the variable unset), which train.py would otherwise take
    for no checkpoint at first and then, after building the Trainer, for the launch folder ("checkpoint not found: .").
    """
    if isinstance(ckpt_path, str) and not ckpt_path.strip():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} names no checkpoint: give a .ckpt file or a run folder to continue, "
            "or leave it out to train from the start"
        )


def check_resume(resume: Any) -> None:
    """Refuses an empty ``resume`` (``resume=$RUN``, the variable unset), which read as the launch folder and was
    answered with "not a run folder (no .hydra/config.yaml)", as if a folder had been named.
    """
    if isinstance(resume, str) and not resume.strip():
        raise ConfigError(
            f"resume={resume!r} names no run folder: give the folder of the run to continue "
            "(resume=outputs/<date>/<time>), or leave it out to start a new run"
        )


def check_cv(cv: Any, in_sweep: bool) -> None:
    """Refuses ``cv=K`` outside a sweep: it means one job per fold, which only ``-m`` launches.

    Without ``-m`` the run would quietly train fold 0 alone (``data.folds=K data.fold=i`` does that on purpose).

    Args:
        cv: The config's ``cv``.
        in_sweep: The run is a job of a sweep (or a DDP rank of one).
    """
    if cv is not None and not in_sweep:
        check_number("cv", cv, integer=True, low=2)
        raise ConfigError(
            f"cv={cv} runs one job per fold: add -m (python scripts/train.py -m ... cv={cv}); "
            f"one fold alone is data.folds={cv} data.fold=0 data.val_size=0"
        )


def check_search(overrides: Sequence[str], in_sweep: bool) -> None:
    """Refuses ``hparams_search=X`` outside a sweep: its sweeper runs only under ``-m`` (one plain run, before).

    Args:
        overrides: The command line's overrides (the default ``grid`` is no search the user asked for).
        in_sweep: The run is a job of a sweep (or a DDP rank of one).
    """
    given = [o.split("=", 1) for o in overrides if o.split("=", 1)[0].lstrip("+~") == "hparams_search"]
    search = given[-1][-1] if given else None
    if search is not None and not in_sweep:
        raise ConfigError(
            f"hparams_search={search} runs a search of many jobs: add -m (python scripts/train.py -m ...)"
        )
