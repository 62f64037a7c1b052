"""The composition root: one Hydra config in, the run's Trainer, system and data module out.

Every entry script that trains goes through ``compose``; config checks before it, the training run around it
(``mnistlab.training``) and the sweeps read the config too, but only ``compose`` builds a run's objects from it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from hydra import compose as compose_config
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnistlab.checkpoint_records import HYDRA_KEYS, check_float32, check_trainable, network_class
from mnistlab.config_checks import (
    check_built_groups,
    check_devices,
    check_schedule_length,
    check_seed,
    check_targets,
    check_trainer_counts,
)
from mnistlab.data import MNISTDataModule
from mnistlab.data.specs import input_stats
from mnistlab.engine import Engine, choose_engine
from mnistlab.engine.profiler import no_profiler_for
from mnistlab.errors import ConfigError, first_line
from mnistlab.monitor_checks import check_monitors, check_validation_monitors
from mnistlab.systems import Classifier
from mnistlab.teachers import load_teacher

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What ``compose`` builds: ready for ``mnistlab.training.fit_and_test``."""

    trainer: pl.Trainer
    system: Classifier
    datamodule: MNISTDataModule
    engine: Engine


def compose(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> Run:
    """Builds the run described by ``cfg`` (``conf/train.yaml`` and its groups).

    Misspelled keys and bad values are refused here, before any data is read. The engine
    (``cfg.engine``, ``mnistlab.engine``) is decided from the built Trainer, and the
    data module and the system are built with it; its log line comes once both are.

    Args:
        cfg: The composed config.
        callbacks: Callback objects to add to the config's (a notebook's own); the engine's
            choice takes them into account like any other.
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    check_built_groups(plain)
    check_targets(plain, origin=preset_origin)
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    check_devices(trainer_args)
    check_trainer_counts(trainer_args)
    check_schedule_length(trainer_args, cfg.get("scheduler"))
    check_seed(cfg.seed)
    network_class(cfg.model.get("_target_"), "model")  # an importable nn.Module class, before any work
    # Read before seeding: building the teacher's networks must not move the random stream of the student's.
    source = cfg.system.get("teacher")  # a path, or a list of them (an ensemble); null: the labels alone
    if source is not None:  # an empty one (an unset shell variable) is refused, not taken for null
        source = OmegaConf.to_object(source) if OmegaConf.is_config(source) else source
        student_input = input_stats({"normalize": cfg.data.get("normalize"), "dataset": cfg.data.get("dataset")})
        teacher = load_teacher(source, student_input)
    else:
        teacher = None
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg.model)
    check_trainable(net)  # here, not in the system: a checkpoint's network may be evaluated without training
    trainer = build_trainer(cfg, callbacks)
    check_float32(net, str(trainer.precision))  # the precision as Lightning resolved it (64 -> 64-true)
    subclasses = [(get_class(cfg.system._target_), Classifier), (get_class(cfg.data._target_), MNISTDataModule)]
    engine = choose_engine(trainer, cfg.get("engine", "auto"), [(c, b) for c, b in subclasses if issubclass(c, b)])
    # Called as partials: Hydra would turn the engine into a config, and instantiate net_config's _target_.
    datamodule = instantiate(cfg.data, _partial_=True)(engine=engine)
    check_validation_monitors(trainer, datamodule.has_validation)
    system = instantiate(cfg.system, _convert_="all", _partial_=True)(
        net=net,
        net_config=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=instantiate(cfg.optimizer, _convert_="all"),
        scheduler=instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None,
        class_names=list(datamodule.classes),
        engine=engine,
        teacher=teacher,
    )
    engine.announce()
    return Run(trainer, system, datamodule, engine)


def build_net(model: DictConfig) -> nn.Module:
    """The network of ``cfg.model``; a constructor that refuses its arguments names them in one line.

    Hydra's message names the group (``model``) but not the arguments, and torch's reason rarely does
    (``hidden: abc`` fails inside ``nn.Linear`` as "empty(): argument 'size' ...").
    """
    try:
        return instantiate(model)
    except InstantiationException as e:
        if not isinstance(e.__cause__, (TypeError, ValueError)):
            raise
        given = OmegaConf.to_container(model, resolve=True)
        args = ", ".join(f"{k}={v!r}" for k, v in given.items() if k != "_target_" and k not in HYDRA_KEYS)
        reason = first_line(e.__cause__)
        if reason.startswith("model."):  # a network's own check already names the setting (model.dropout=2 ...)
            raise ConfigError(reason) from None
        raise ConfigError(f"model: {given['_target_']}({args}) refused its settings: {reason}") from None


def build_trainer(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The Trainer of ``cfg.trainer`` with the loggers of ``cfg.logger``, the callbacks of ``cfg.callbacks``
    and ``callbacks``."""
    if cfg.trainer.get("barebones"):
        # Barebones makes self.log a warning: with the settings Lightning refuses beside it switched off (it names
        # the first, a logger by its repr), the run trained in full and then failed on a KeyError for test/acc.
        raise ConfigError(
            "trainer.barebones=true switches off self.log, the loggers and checkpoints, so this run could report no "
            "accuracy and keep no weights; drop it (benchmarks/benchmark.py times Lightning's bare loop as (f))"
        )
    loggers = list(_build_group(cfg.get("logger")).values())
    configured = _build_group(cfg.get("callbacks"))
    if cfg.trainer.get("enable_checkpointing", True) is False:
        # The flag means no checkpoints; Lightning would instead refuse the configured ModelCheckpoint.
        left_out = [name for name, cb in configured.items() if isinstance(cb, Checkpoint)]
        configured = {name: cb for name, cb in configured.items() if name not in left_out}
        if left_out:
            log.info(
                "trainer.enable_checkpointing=false: callbacks %s left out; no checkpoint, so resume= cannot continue "
                "this run",
                ", ".join(left_out),
            )
    every_callback = [*configured.values(), *callbacks]
    if cfg.trainer.get("enable_progress_bar", True) is False:
        # The flag means no bar; Lightning would instead refuse the configured one.
        every_callback = [cb for cb in every_callback if not isinstance(cb, ProgressBar)]
    profiler = no_profiler_for(cfg.trainer)
    # Plain dicts and lists, as Lightning documents them (max_time={minutes: 5}), not DictConfig.
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=every_callback, _convert_="all", **profiler)
    named = {f"callbacks.{name}": cb for name, cb in configured.items()} | {type(cb).__name__: cb for cb in callbacks}
    check_monitors(named, trainer.log_every_n_steps)  # the interval as Lightning resolved it (50 when unset)
    return trainer


def _build_group(group: DictConfig | None) -> dict[str, Any]:
    """The objects of a ``callbacks`` or ``logger`` group by name; an entry set to null is left out.

    ``callbacks.test_report=null`` removes that callback, as in lightning-hydra-template: built,
    the None reached Lightning's hooks (``AttributeError: 'NoneType' object has no attribute ...``).
    """
    return {name: instantiate(node) for name, node in (group or {}).items() if node is not None}


def preset_origin(key: str) -> tuple[str, str | None] | None:
    """The experiment preset that set ``key``, and the fix, when the key is refused (``config_checks.check_targets``).

    ``experiment=speedrun model=linear``: the preset sets ``model.channels`` for its own ``model=record_cnn``, and the
    line named the key alone, as if the user had typed it. Composed again without the experiment (the error path
    only): a key that is then absent came from it. None outside a Hydra app (a config composed in Python), or for a
    key the experiment did not set.
    """
    if not HydraConfig.initialized() or not GlobalHydra.instance().is_initialized():  # not in a Hydra app
        return None
    if (experiment := HydraConfig.get().runtime.choices.get("experiment")) is None:
        return None
    hydra_cfg = HydraConfig.get()
    name, task = hydra_cfg.job.config_name, list(hydra_cfg.overrides.task)
    searchpath = [o for o in hydra_cfg.overrides.hydra if o.startswith("hydra.searchpath")]
    group = key.split(".", 1)[0]

    def given(o: str) -> str:  # the key or group of an override
        return o.split("=", 1)[0].lstrip("+~")

    try:
        without = compose_config(name, [*searchpath, *(o for o in task if given(o) != "experiment")])
        if OmegaConf.select(without, key, default=None, throw_on_missing=False) is not None:
            return None  # the run has it without the experiment too
        chosen = compose_config(name, [*searchpath, *(o for o in task if given(o) != group)], return_hydra_config=True)
    except (HydraException, ValueError):  # a key select cannot read (a list's [i]): the key alone
        return None
    source = f"experiment={experiment}"
    changes = [o for o in task if given(o) == group or given(o).startswith(f"{group}.")]
    if not changes:
        return source, None  # the preset's own group takes no such key: nothing on the command line to drop
    own = chosen.hydra.runtime.choices.get(group)
    own = f"; it chooses {group}={own}" if own is not None else ""
    options = [o.lstrip("+") for o in changes if given(o) == group]
    preset = f", or use a preset made for {options[-1]}" if options else ""
    return source, f"leave the {group} to {source} (drop {' '.join(changes)}{own}), or drop {source}{preset}"
