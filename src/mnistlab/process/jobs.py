"""What a job changes for its own duration only: DDP's re-launch, a sweep job's console and GPU; a launch's lines."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def started_by_lightning_ddp() -> bool:
    """Whether this process is a DDP rank that Lightning's ``ddp`` strategy started to re-run its job.

    Lightning's children get ``LOCAL_RANK`` and nothing of torchrun's: torchrun's ranks (rank 0 among them, which
    runs the user's command and its checks) also have ``LOCAL_RANK``, beside ``TORCHELASTIC_RUN_ID``.
    """
    return "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ


def joins_the_first_rank() -> bool:
    """Whether this process is a torchrun rank or an srun task other than the first (docs/usage.md).

    All of them start ``train.py`` into one folder; the first holds it (``run_folders.lock_run_folder``).
    """
    return os.environ.get("SLURM_PROCID", "0") != "0" or os.environ.get("RANK", "0") != "0"


@contextmanager
def ddp_children_join_this_job(script: str) -> Iterator[None]:
    """Points Lightning's DDP re-launch at this job's config and folder for the duration of the job.

    Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the script again with
    ``sys.argv`` plus ``hydra.run.dir=<run.dir>``. In a multirun that re-runs the whole sweep
    (``-m`` and the comma lists are in ``sys.argv``), ``run.dir`` is not the job's folder, and
    in a submitit job ``sys.argv`` is submitit's runner. Here the children instead compose the
    job's saved ``.hydra/config.yaml`` (the exact task config) and run in the job's own folder,
    where Hydra writes nothing but their log.

    Args:
        script: Path of the entry script the children run (``__file__`` of ``scripts/train.py``).
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    import __main__

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    saved = output_dir / str(hydra_cfg.output_subdir) / "config.yaml"
    if started_by_lightning_ddp() or hydra_cfg.output_subdir is None or not saved.is_file():
        yield  # a child itself, or nothing saved to rebuild from: Lightning's default
        return
    argv, env, spec = list(sys.argv), dict(os.environ), __main__.__spec__
    sys.argv[:] = [str(Path(script).resolve()), "--config-path", str(saved.parent), "--config-name", "config"]
    # Lightning runs `python -m <__main__.__spec__.name>` when set: in a submitit job that is submitit's runner.
    __main__.__spec__ = None
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(output_dir)  # Lightning appends hydra.run.dir=<this>
    try:
        yield
    finally:
        sys.argv[:] = argv
        __main__.__spec__ = spec
        _end_process_group()
        # Lightning exported LOCAL_RANK, MASTER_PORT, ... for its children: left set, the next DDP job
        # of a sweep would take itself for a child and wait for ranks that never come.
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)


def _end_process_group() -> None:
    # The next DDP job of a sweep would otherwise reuse this group, whose other ranks have exited.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class JobConsole:
    """Sends a sweep job's console output (log lines, prints, warnings, progress bars) into its log file only.

    A sweep's console then holds one line per job; ``restore`` brings the console back.
    """

    def __init__(self, output_dir: Path, fallback_name: str) -> None:
        root = logging.getLogger()
        files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        self.path = Path(files[0].baseFilename) if files else output_dir / f"{fallback_name}.log"
        self.removed = [h for h in root.handlers if type(h) is logging.StreamHandler]  # the console handlers
        for handler in self.removed:
            root.removeHandler(handler)
        self.streams = sys.stdout, sys.stderr
        self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in restore()
        sys.stdout = sys.stderr = self.file

    def restore(self) -> None:
        sys.stdout, sys.stderr = self.streams
        self.file.close()
        for handler in self.removed:
            logging.getLogger().addHandler(handler)


def pin_gpu(gpu: str) -> None:
    """Makes ``gpu`` the only GPU this sweep worker sees; call it before CUDA starts."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


# The environment variables that pl.seed_everything sets.
SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextmanager
def checking_sweep_jobs() -> Iterator[None]:
    """What a sweep's check of its jobs' settings (``mnistlab.sweeps.shared_refusal``) changes, restored after it.

    - Hydra's config (``HydraConfig``): each checked job's while it is checked, as in the job (its
      ``${hydra:runtime.output_dir}``); the sweep's again after.
    - ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS``: the check's ``compose`` seeds, and a joblib worker must not
      inherit the check's seed (each job seeds itself again).
    - log records below ``WARNING`` and warnings: the check's Trainer is no job's, so its lines ("GPU available:
      False, ...", a tip) are not the sweep's to print.
    """
    import warnings

    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.instance()
    saved_config = hydra_config.cfg
    seeds = {name: os.environ.get(name) for name in SEED_VARIABLES}
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        hydra_config.cfg = saved_config
        for name, value in seeds.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _JobNumbers(logging.Filter):
    """Adds ``first`` to the number of a launcher's ``#N : overrides`` line (Hydra's joblib launcher counts from 0)."""

    LINE = re.compile(r"\t#(\d+) : ")

    def __init__(self, first: int) -> None:
        super().__init__()
        self.first = first

    def filter(self, record: logging.LogRecord) -> bool:
        # The launcher formats the line itself ("\t#{} : {}".format(...)): its message has no arguments.
        if isinstance(record.msg, str) and not record.args and (m := self.LINE.match(record.msg)):
            record.msg = f"\t#{int(m[1]) + self.first} : {record.msg[m.end() :]}"
        return True


@contextmanager
def launch_lines_numbered(logger_name: str, first: int) -> Iterator[None]:
    """Numbers the ``#N`` lines that the logger ``logger_name`` prints during one launch from ``first`` on.

    A sweep launched in several calls (``hydra.sweeper.max_batch_size``, a continued sweep's missing jobs, an
    Optuna search's rounds) printed ``#0 #1 #0 #1 #0`` under ``hydra/launcher=joblib``, whose ``launch`` counts
    each call's jobs from 0 in its lines (their folders and ``hydra.job.num`` have the right numbers). The
    filter is on that logger only, for this launch only.
    """
    logger = logging.getLogger(logger_name)
    numbers = _JobNumbers(first)
    logger.addFilter(numbers)
    try:
        yield
    finally:
        logger.removeFilter(numbers)
