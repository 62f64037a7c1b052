"""Train and test one configuration: ``python scripts/train.py model=hidden trainer.accelerator=gpu``.

``python scripts/train.py resume=RUN_DIR`` continues an interrupted run in its own folder.
"""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

import os
import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnistlab import process
from mnistlab.command_line import exit_on_mistake
from mnistlab.resume.run import interrupted_hint


def build_and_run(cfg: DictConfig) -> float:
    from mnistlab.callbacks import JobProgress
    from mnistlab.composition import compose
    from mnistlab.config_checks import check_cv, check_search
    from mnistlab.hparams import run_hparams
    from mnistlab.resume.checkpoint import check_continuable
    from mnistlab.resume.run import continued_config, launch_record, mark_restart
    from mnistlab.training import fit_and_test

    # cv=K is a sweep of K folds; a DDP rank started by Lightning (LOCAL_RANK) re-runs one job of it.
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN or "LOCAL_RANK" in os.environ
    check_cv(cfg.get("cv"), in_sweep)
    check_search(HydraConfig.get().overrides.task, in_sweep)
    cfg = continued_config(cfg, HydraConfig.get().overrides.task)  # resume=RUN_DIR or ckpt_path=...
    config = OmegaConf.to_container(cfg, resolve=True)
    # A sweep's job writes into its log; its progress, a line every 30 s, goes to the sweep's console.
    # Not in a DDP rank that Lightning started (LOCAL_RANK): it re-runs the job outside the sweep, without its number.
    job = HydraConfig.get().mode == RunMode.MULTIRUN and sys.__stdout__
    progress = [JobProgress(HydraConfig.get().job.num, sys.__stdout__)] if job else []
    run = compose(cfg, callbacks=progress)
    if cfg.ckpt_path and not cfg.resume:  # a new run from a checkpoint: one it cannot take up is refused
        check_continuable(run.system, cfg.ckpt_path)
    mark_restart(run.trainer, cfg.ckpt_path)
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
    process.configure_job()
    # In a sweep a failing job must not exit the process: the sweep records it and goes on.
    single = HydraConfig.get().mode != RunMode.MULTIRUN
    errors = process.exit_on_user_error() if single else nullcontext()
    interrupted = process.hint_on_interrupt(lambda: interrupted_hint(cfg.paths.output_dir)) if single else nullcontext()
    with errors, interrupted, process.ddp_children_join_this_job(__file__):
        return build_and_run(cfg)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "train")  # typos: one line with the fix, before Hydra runs
    main()
