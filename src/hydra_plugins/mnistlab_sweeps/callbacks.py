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

from mnistlab.cli import exception_chain, user_error
from mnistlab.console import quiet_console
from mnistlab.errors import MnistlabError
from mnistlab.io import write_json
from mnistlab.sweeps.gpus import claim_slot, visible_gpus
from mnistlab.sweeps.summary import JOB_FILE, read_metrics, write_summary

log = logging.getLogger(__name__)


def _multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


class JobConsole:
    """Sends a job's console output (log lines, prints, warnings, progress bars) into its log file only.

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


def job_outcome(job_return: JobReturn) -> tuple[str, str]:
    """``(status, error line)`` of a finished job: ok, failed or pruned (an Optuna trial stopped early)."""
    if job_return.status == JobStatus.COMPLETED:
        return "ok", ""
    exc = job_return._return_value  # the job's exception (the return_value property prints a notice and raises)
    if type(exc).__name__ == "TrialPruned":
        return "pruned", str(exc).strip()
    message = user_error(exc)  # the user's error, not Hydra's instantiation wrapper
    cause = next((e for e in exception_chain(exc) if isinstance(e, MnistlabError)), exc)
    lines = (message or str(exc)).strip().splitlines()
    return "failed", f"{type(cause).__name__}: {lines[0] if lines else ''}".strip()


class SweepSummary(Callback):
    """Writes ``job.json`` into each job folder and ``summary.csv``/``summary.md`` into the sweep folder.

    ``on_job_end`` runs where the job ran (the sweep process, a joblib worker or a submitit
    job), so the outcome travels through the job folder. While a job runs, its console output
    goes to its log file only; the console gets one line per job. ``on_multirun_end`` prints
    the summary and exits with status 1 when any job failed.
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._console: JobConsole | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start = time.perf_counter()
        if _multirun(config):
            quiet_console()
            self._console = JobConsole(Path(config.hydra.runtime.output_dir), config.hydra.job.name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _multirun(config):
            return
        seconds = round(time.perf_counter() - self._start, 1)
        status, error = job_outcome(job_return)
        if status == "failed":
            log.error("job %s failed", config.hydra.job.num, exc_info=job_return._return_value)  # into its log
        output_dir = Path(config.hydra.runtime.output_dir)
        write_json(output_dir / JOB_FILE, {"status": status, "error": error, "seconds": seconds})
        log_file = None
        if self._console is not None:
            log_file = self._console.path
            self._console.restore()
            self._console = None
        print(progress_line(config, status, error, seconds, output_dir, log_file), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        exclude = list(config.hydra.job.config.override_dirname.exclude_keys)
        jobs, markdown = write_summary(sweep_dir, exclude)
        print(f"\n{markdown}\n(summary.md and summary.csv in {sweep_dir})", flush=True)
        if failed := sum(job.status == "failed" for job in jobs):
            print(f"error: {failed} of {len(jobs)} jobs failed (see {sweep_dir / 'summary.md'})", file=sys.stderr)
            sys.exit(1)


def progress_line(
    config: DictConfig, status: str, error: str, seconds: float, output_dir: Path, log_file: Path | None
) -> str:
    """The console's one line for a finished job, e.g. ``job 2 ok: test/acc 0.9494 val/acc_best 0.9418 (59.1 s)``."""
    head = f"job {config.hydra.job.num} {status}"
    if status == "failed":
        where = f"{output_dir.name}/{log_file.name}" if log_file else output_dir.name
        return f"{head}: {error} (traceback in {where})"
    if status == "pruned":
        return f"{head}: {error} ({seconds} s)"
    metrics = read_metrics(output_dir)
    shown = " ".join(f"{k} {metrics[k]:.4f}" for k in ("test/acc", "val/acc_best") if k in metrics)
    return f"{head}: {shown} ({seconds} s)"


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
