"""Train and test one configuration: ``python scripts/train.py model=hidden trainer.accelerator=gpu``.

``python scripts/train.py resume=RUN_DIR`` continues an interrupted run in its own folder.
"""

from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnistlab.cli import register_resolvers, skip_final_collection, user_errors
from mnistlab.command_line import exit_on_mistake
from mnistlab.ddp import ddp_children_join_this_job

register_resolvers()  # ${mnistlab.if_set:...} in conf/hydra/train.yaml: resume=RUN_DIR runs in RUN_DIR


def launch_record(cfg: DictConfig) -> tuple[list[str], dict]:
    """The run's command-line overrides and config-group choices; a resumed run's are its first launch's."""
    hydra_cfg = HydraConfig.get()
    saved = Path(cfg.paths.output_dir) / ".hydra" / "hydra.yaml"
    if cfg.resume and saved.exists():
        hydra_cfg = OmegaConf.load(saved).hydra
    return list(hydra_cfg.overrides.task), OmegaConf.to_container(hydra_cfg.runtime.choices)


def build_and_run(cfg: DictConfig) -> float:
    from mnistlab.checkpoints import continue_from
    from mnistlab.composition import compose
    from mnistlab.hparams import run_hparams
    from mnistlab.resume import resumed_config
    from mnistlab.training import fit_and_test

    if cfg.resume:
        cfg = resumed_config(cfg.resume, cfg, HydraConfig.get().overrides.task)
    elif cfg.ckpt_path:  # a file or a run folder; max_epochs counts the checkpoint's epochs too
        cfg.ckpt_path = str(continue_from(cfg.ckpt_path, cfg.trainer.max_epochs))
    config = OmegaConf.to_container(cfg, resolve=True)
    run = compose(cfg)
    metrics = fit_and_test(
        run.trainer,
        run.system,
        run.datamodule,
        Path(cfg.paths.output_dir),
        ckpt_path=cfg.ckpt_path,
        hparams=run_hparams(config, *launch_record(cfg)),
        config=config,
    )
    return metrics["test/acc"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    # In a sweep a failing job must not exit the process: the sweep records it and goes on.
    errors = nullcontext() if HydraConfig.get().mode == RunMode.MULTIRUN else user_errors()
    with errors, ddp_children_join_this_job(__file__):
        return build_and_run(cfg)


if __name__ == "__main__":
    exit_on_mistake(__file__, "train")  # typos: one line with the fix, before Hydra runs
    skip_final_collection()
    main()
