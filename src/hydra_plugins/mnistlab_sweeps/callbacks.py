"""Hydra callbacks of a sweep: record each job's outcome, write the summary, place jobs on GPUs."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mnistlab.cli import user_error
from mnistlab.io import write_json
from mnistlab.sweeps.gpus import claim_slot, visible_gpus
from mnistlab.sweeps.summary import JOB_FILE, write_summary

log = logging.getLogger(__name__)


def _multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


class SweepSummary(Callback):
    """Writes ``job.json`` into each job folder and ``summary.csv``/``summary.md`` into the sweep folder.

    ``on_job_end`` runs where the job ran (the sweep process, a joblib worker or a submitit
    job), so the outcome travels through the job folder. ``on_multirun_end`` prints the
    summary and exits with status 1 when any job failed.
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _multirun(config):
            return
        record = {"status": "ok", "error": "", "seconds": round(time.perf_counter() - self._start, 1)}
        if job_return.status != JobStatus.COMPLETED:
            try:
                _ = job_return.return_value  # re-raises the job's exception
            except Exception as exc:
                pruned = type(exc).__name__ == "TrialPruned"
                cause = user_error(exc) or exc  # the user's error, not Hydra's instantiation wrapper
                lines = str(cause).strip().splitlines()
                record["status"] = "pruned" if pruned else "failed"
                record["error"] = f"{type(cause).__name__}: {lines[0] if lines else ''}".strip()
                if not pruned:
                    log.error("job %s failed", config.hydra.job.num, exc_info=exc)
        write_json(Path(config.hydra.runtime.output_dir) / JOB_FILE, record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        exclude = list(config.hydra.job.config.override_dirname.exclude_keys)
        jobs, markdown = write_summary(sweep_dir, exclude)
        print(f"\n{markdown}\n(summary.md and summary.csv in {sweep_dir})", flush=True)
        if failed := sum(job.status == "failed" for job in jobs):
            print(f"error: {failed} of {len(jobs)} jobs failed (see {sweep_dir / 'summary.md'})", file=sys.stderr)
            sys.exit(1)


class OneGpuPerJob(Callback):
    """Pins each parallel worker of ``hydra/launcher=joblib`` to its own GPU.

    A worker claims a free GPU slot (a lock file in the sweep folder) at its first job and
    sets ``CUDA_VISIBLE_DEVICES`` to that GPU before CUDA starts; it keeps the GPU for the
    jobs it runs after that. With ``hydra.launcher.n_jobs`` = the number of GPUs, every GPU
    runs one job at a time. The pool is ``CUDA_VISIBLE_DEVICES`` if set, else all GPUs.

    Args:
        enabled: Switch it off to let each job see every GPU (e.g. DDP jobs).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if not (self.enabled and _multirun(config) and "joblib" in launcher):
            return
        gpus = visible_gpus()
        if len(gpus) < 2:
            return
        slot = claim_slot(Path(config.hydra.sweep.dir) / ".gpu_slots", len(gpus))
        if slot is None:  # more workers than GPUs: share them round-robin
            slot = config.hydra.job.num % len(gpus)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot]
        log.info("job %s runs on GPU %s", config.hydra.job.num, gpus[slot])
