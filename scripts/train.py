"""Train and test one configuration: ``python scripts/train.py model=hidden trainer.accelerator=gpu``.

``python scripts/train.py resume=RUN_DIR`` continues an interrupted run in its own folder.
"""

import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnistlab_sweeps.ddp import ddp_children_join_this_job
from mnistlab.cli import user_errors


def resumed_config(run_dir: str) -> DictConfig:
    """The interrupted run's saved config, set to continue from its last.ckpt in its folder."""
    from mnistlab.checkpoints import resume_files

    config, last = resume_files(run_dir)
    cfg = OmegaConf.load(config)
    cfg.paths.output_dir, cfg.ckpt_path, cfg.resume = str(config.parents[1]), str(last), run_dir
    return cfg


def build(cfg: DictConfig):
    """The run's trainer, system and data module, built from the config (shared with scripts/benchmark.py)."""
    import logging

    import lightning.pytorch as pl

    # `lightning` adds its own console handler and also propagates to Hydra's: print each line once.
    logging.getLogger("lightning").handlers.clear()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    from mnistlab.records import network_class

    network_class(cfg.model.get("_target_"), "model")  # an importable nn.Module class, before any work
    datamodule = hydra.utils.instantiate(cfg.data)
    net = hydra.utils.instantiate(cfg.model)
    # Called as a partial so that Hydra does not instantiate net_config's _target_: the system records it.
    system = hydra.utils.instantiate(cfg.system, _convert_="all", _partial_=True)(
        net=net,
        net_config=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=hydra.utils.instantiate(cfg.optimizer, _convert_="all"),
        scheduler=hydra.utils.instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None,
        class_names=list(datamodule.classes),
    )
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return trainer, system, datamodule


def build_and_run(cfg: DictConfig) -> float:
    from mnistlab.training import fit_and_test
    from mnistlab.validation import check_targets

    if cfg.resume:
        cfg = resumed_config(cfg.resume)
    check_targets(OmegaConf.to_container(cfg, resolve=True))  # misspelled keys, before any work
    trainer, system, datamodule = build(cfg)
    metrics = fit_and_test(
        trainer,
        system,
        datamodule,
        Path(cfg.paths.output_dir),
        ckpt_path=cfg.ckpt_path,
        hparams=OmegaConf.to_container(cfg, resolve=True),
    )
    return metrics["test/acc"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    # In a sweep a failing job must not exit the process: the sweep records it and goes on.
    errors = nullcontext() if HydraConfig.get().mode == RunMode.MULTIRUN else user_errors()
    with errors, ddp_children_join_this_job(__file__):
        return build_and_run(cfg)


if __name__ == "__main__":
    # A resumed run logs into its own folder; Hydra's record of this call goes beside the original's.
    for arg in [a for a in sys.argv[1:] if a.startswith("resume=") and a != "resume=null"]:
        sys.argv += [f"hydra.run.dir={arg.split('=', 1)[1]}", "hydra.output_subdir=.hydra/resume"]
    main()
