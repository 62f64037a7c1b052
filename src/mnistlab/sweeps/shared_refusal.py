"""A setting that every job of a sweep shares, refused once before the first job instead of once by each job.

``python scripts/train.py -m optimizer.lr=0 model=linear,hidden`` printed the same error for each job and ran the
sweep to its end. Before any job, the first job's config goes through what the job runs before any work
(``mnistlab.training.checked_run``); only where it is refused are the next jobs checked, until one is not refused.
A sweep whose every job is refused stops before its first job, with their line, or each job's where they differ; a
job whose own swept value is bad (``-m optimizer.lr=0,0.001``) leaves the others to run, and fails as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict, read_write

SHOWN = 5  # jobs whose lines a refusal of every job shows


def job_refusal(cfg: DictConfig, overrides: Sequence[str]) -> str | None:
    """The one-line error with which a sweep job of ``scripts/train.py`` stops before any work, else None.

    The job's own checks and composition (``mnistlab.training.checked_run``, which builds the network, the
    Trainer, the data module and the system without reading any data or training); an error that is no user
    error (``mnistlab.user_errors.user_error``) is a bug, left to the job to report with its traceback.

    Args:
        cfg: The job's composed ``conf/train.yaml``, without Hydra's node.
        overrides: The job's command-line overrides.
    """
    from mnistlab.training import checked_run
    from mnistlab.user_errors import user_error

    try:
        checked_run(cfg, overrides, in_sweep=True)
    except Exception as e:  # the job's checks raise many kinds; user_error sorts them
        return user_error(e)
    return None


def shared_refusal(jobs: Iterable[tuple[DictConfig, list[str]]]) -> str | None:
    """The error with which every one of ``jobs`` (config and overrides, composed lazily) is refused, else None.

    One line where every job is refused with the same line; where each is refused in its own words
    (``-m experiment=speedrun model=linear,hidden``: each line names its model), a line per job under one
    heading, up to ``SHOWN``. Only the first job is checked where it is not refused, the common case: one compose.
    """
    refused: list[tuple[list[str], str]] = []
    for cfg, overrides in jobs:
        refusal = job_refusal(cfg, overrides)
        if refusal is None:
            return None
        refused.append((overrides, refusal))
    if not refused:
        return None
    if len({refusal for _, refusal in refused}) == 1:
        return refused[0][1]
    shared = set.intersection(*(set(overrides) for overrides, _ in refused))  # each job is named by what it sweeps
    lines = [f"each of the {len(refused)} jobs of this sweep is refused before any work:"]
    for i, (overrides, refusal) in enumerate(refused[:SHOWN]):
        lines.append(f"  job {i} ({' '.join(o for o in overrides if o not in shared)}): {refusal}")
    if len(refused) > SHOWN:
        lines.append(f"  ... and {len(refused) - SHOWN} more jobs")
    return "\n".join(lines)


def sweep_job_configs(
    sweep_config: DictConfig, loader: Any, jobs: Sequence[Sequence[str]]
) -> Iterator[tuple[DictConfig, list[str]]]:
    """Each of ``jobs``' configs as its launcher composes it and the job receives it, with its overrides.

    Hydra's config (``HydraConfig``) is the job's while it is checked, as in the job: ``${hydra:runtime.output_dir}``
    resolves to the job's folder, which is not made (the checks only read it). Run inside
    ``mnistlab.process.jobs.checking_sweep_jobs``, which restores the sweep's.

    Args:
        sweep_config: The sweep's config (the sweeper's ``config``).
        loader: Hydra's config loader (``hydra_context.config_loader``), whose ``load_sweep_config`` composes a job.
        jobs: Every job's overrides, in the order of their numbers.
    """
    from hydra.core.hydra_config import HydraConfig

    for num, overrides in enumerate(jobs):
        cfg = loader.load_sweep_config(sweep_config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
            cfg.hydra.runtime.output_dir = str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))
        HydraConfig.instance().set_config(cfg)
        task = list(cfg.hydra.overrides.task)  # what the job's HydraConfig gives train()
        # A copy, as Hydra's run_job hands over: HydraConfig's node keeps its parent, whose hydra node its own
        # interpolations read (the Optuna sweeper's storage, sqlite:///${hydra.sweep.dir}/optuna.db).
        cfg = copy.deepcopy(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]  # as Hydra's run_job hands the config to the task
        yield cfg, task


def refusal_before_launch(sweep_config: DictConfig, loader: Any, jobs: Sequence[Sequence[str]]) -> str | None:
    """The line with which every one of a sweep's ``jobs`` would be refused (``shared_refusal``), else None.

    Not where the jobs run on other machines (``hydra/launcher=submitit_slurm``): a login node without a GPU would
    refuse the GPU jobs' ``trainer.accelerator=gpu``, which their nodes honour.
    """
    from mnistlab.process.jobs import checking_sweep_jobs

    if not jobs or str(sweep_config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return None
    with checking_sweep_jobs():
        return shared_refusal(sweep_job_configs(sweep_config, loader, jobs))
