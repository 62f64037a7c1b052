"""Hydra callbacks of a sweep: record each job's outcome, write the summary, place jobs on GPUs, close MLflow runs."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnistlab_sweeps.hydra_private import job_exception
from hydra_plugins.mnistlab_sweeps.interruptions import ending_interrupted, write_hparams_columns
from hydra_plugins.mnistlab_sweeps.launchers import refuse
from mnistlab.atomic_files import write_json
from mnistlab.config_checks import check_cv, check_search
from mnistlab.errors import ConfigError, WriteError
from mnistlab.process.jobs import JobConsole, joins_the_first_rank, pin_gpu, started_by_lightning_ddp
from mnistlab.sweeps.gpus import claim_slot, visible_gpus
from mnistlab.sweeps.summary import JOB_FILE, objective_mistake, read_metrics, with_earlier_launches, write_summary
from mnistlab.user_errors import one_line

log = logging.getLogger(__name__)


def _multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


def job_outcome(job_return: JobReturn) -> tuple[str, str]:
    """``(status, error line)`` of a finished job: ok, failed or pruned (an Optuna trial stopped early)."""
    if job_return.status == JobStatus.COMPLETED:
        return "ok", ""
    exc = job_exception(job_return)
    if type(exc).__name__ == "TrialPruned":
        return "pruned", str(exc).strip()
    return "failed", one_line(exc).strip()  # the user's error, not Hydra's instantiation wrapper


class RunFolder(Callback):
    """Asked before Hydra writes into a run's folder (its ``.hydra/`` records, the log file).

    A folder that was there already is the user's: a failed command never deletes it. ``train.py`` refuses
    a ``resume=`` folder that holds no interrupted run, a new run into a folder that holds another run,
    before Hydra overwrites that run's records, and a folder that another running process holds
    (``run_folders.lock_run_folder``); and ``resume=`` under ``-m``, which continues no sweep. ``evaluate.py``
    refuses a folder that holds a run, a sweep or a report. ``cv=K`` and ``hparams_search=`` without ``-m`` are
    refused here too, before any folder is made (``training.checked_run``, the list of a job's checks, has them too).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnistlab.resume.run import report_folder_mistake, run_folder_mistake
        from mnistlab.run_folders import in_use_by_another, lock_run_folder, note_existing

        train = "resume" in config and not started_by_lightning_ddp()  # train.py; Lightning's DDP ranks join its folder
        if train:  # what -m alone runs, refused before Hydra makes the folder: no torchrun rank leaves one behind
            try:
                check_cv(config.get("cv"), in_sweep=False)
                check_search(config.hydra.overrides.task, in_sweep=False)
            except ConfigError as exc:
                refuse(str(exc))
        run_dir = Path(str(config.hydra.run.dir)).expanduser().resolve()
        existed = note_existing(run_dir)
        # srun's tasks and torchrun's ranks (docs/usage.md) all start train.py into one folder: the first holds it.
        first = not joins_the_first_rank()
        setting = "resume" if train and config.resume is not None else "hydra.run.dir"  # the one the user gave
        if train and (mistake := run_folder_mistake(config, run_dir, existed)):
            # A resume of a run still going, before its first checkpoint: that it runs is the reason, not that
            # it saved nothing yet. Only looked at (a shared lock), so refused commands never block each other.
            if setting == "resume":
                mistake = in_use_by_another(run_dir, setting) or mistake
            refuse(mistake)
        if train and first and (busy := lock_run_folder(run_dir, setting)):
            refuse(busy)
        # evaluate.py's report; predict.py, export.py and serve.py write no records (run.dir=., often a run's folder).
        records = "resume" not in config and config.hydra.output_subdir is not None and not started_by_lightning_ddp()
        if records and (mistake := report_folder_mistake(run_dir, existed)):
            refuse(mistake)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume"):
            refuse(
                "resume=RUN_DIR continues one run: drop -m "
                "(a killed sweep continues with its own command plus hydra.sweep.dir=SWEEP_DIR)"
            )


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
            self._console = JobConsole(Path(config.hydra.runtime.output_dir), config.hydra.job.name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _multirun(config):
            return
        seconds = round(time.perf_counter() - self._start, 1)
        status, error = job_outcome(job_return)
        raised = status == "failed"
        if raised:
            log.error("job %s failed", config.hydra.job.num, exc_info=job_exception(job_return))  # into its log
        output_dir = Path(config.hydra.runtime.output_dir)
        objective = OmegaConf.select(config, "hydra.sweeper.objective", default=None)  # an Optuna trial's job
        if status == "ok" and objective and (mistake := objective_mistake(output_dir, objective)):
            status, error = "failed", mistake  # the study marks the trial failed: so do its row and its line
        log_file = None
        if self._console is not None:
            log_file = self._console.path
            self._console.restore()
            self._console = None
        try:
            write_json(output_dir / JOB_FILE, {"status": status, "error": error, "seconds": seconds})
        except WriteError as e:
            refuse(str(e))  # what the jobs left stays: the same command continues the sweep
        print(progress_line(config, status, error, seconds, output_dir, log_file, raised), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        exclude = list(config.hydra.job.config.override_dirname.exclude_keys)
        try:
            with ending_interrupted(config):  # a Ctrl-C: the line, not a traceback
                jobs, markdown = write_summary(sweep_dir, exclude)
                write_hparams_columns(sweep_dir)
        except WriteError as e:
            refuse(str(e))  # what the jobs left stays: the same command continues the sweep
        chart = (sweep_dir / "summary.png").is_file()
        files = "summary.md, summary.csv and summary.png" if chart else "summary.md and summary.csv"
        print(f"\n{markdown}\n({files} in {sweep_dir})", flush=True)
        if failed := sum(job.status == "failed" for job in jobs):
            print(f"error: {failed} of {len(jobs)} jobs failed (see {sweep_dir / 'summary.md'})", file=sys.stderr)
            sys.exit(1)


def progress_line(
    config: DictConfig,
    status: str,
    error: str,
    seconds: float,
    output_dir: Path,
    log_file: Path | None,
    raised: bool = True,
) -> str:
    """The console's one line for a finished job, e.g. ``job 2 ok: test/acc 0.9494 val/acc_best 0.9418 (59.1 s)``.

    A failed job that did not raise (its Optuna trial got no value) has no traceback to point to.
    """
    head = f"job {config.hydra.job.num} {status}"
    if status == "failed" and raised:
        where = f"{output_dir.name}/{log_file.name}" if log_file else output_dir.name
        return f"{head}: {error} (traceback in {where})"
    if status in ("failed", "pruned"):
        return f"{head}: {error} ({seconds} s)"
    metrics = read_metrics(output_dir)
    shown = " ".join(f"{k} {metrics[k]:.4f}" for k in ("test/acc", "val/acc_best", "val/loss_best") if k in metrics)
    took = f"{seconds} s"
    if isinstance(metrics.get("fit_seconds_earlier"), int | float):  # resumed: the summary's count too
        took += f"; {with_earlier_launches(seconds, metrics):.1f} s with its earlier launches"
    return f"{head}: {shown or 'no metrics.json (a trainer.fast_dev_run smoke test writes none)'} ({took})"


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
        pin_gpu(gpus[slot])
        log.info("job %s runs on GPU %s", config.hydra.job.num, gpus[slot])


class MLflowRuns(Callback):
    """Opens and closes each job's MLflow run around ``logger=mlflow`` (a no-op without it).

    - Sweep start: creates the database and the sweep's experiment once, so that parallel
      jobs never race to create them.
    - Job end (where the job ran): uploads the report files and the config, records the
      checkpoint path and sets the run ``FINISHED``; a failed job's run becomes ``FAILED``
      with its error, and a job that failed before its logger existed still gets such a run.
    """

    def __init__(self) -> None:
        self._run_file_before: float | None = None

    @staticmethod
    def _logger_node(config: DictConfig) -> DictConfig | None:
        node = OmegaConf.select(config, "logger.mlflow", default=None)
        if node is None:
            return None
        from mnistlab.extras import missing_extra

        # Without the extra the job itself stops with the one-line install hint.
        return node if missing_extra("logger=mlflow", "mlflow", "mlflow") is None else None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        node = self._logger_node(config)
        if node is None:
            return
        from hydra.core.hydra_config import HydraConfig

        from mnistlab.mlflow_logger import choose_experiment, prepare_store

        HydraConfig.instance().set_config(config)  # resolves ${hydra:...} in the sweep's own config
        name = choose_experiment(node.experiment_name, node.preset, node.sweep_dir)
        prepare_store(node.tracking_uri, name, node.get("artifact_location"))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._run_file_before = self._run_file_time(config)

    def _run_file_time(self, config: DictConfig) -> float | None:
        # A resumed job's command line selects no logger, but its run folder holds the run it continues.
        if config.get("resume") is None and OmegaConf.select(config, "logger.mlflow", default=None) is None:
            return None  # not an MLflow job: mnistlab.mlflow_logger (and Lightning) stay unimported here
        from mnistlab.mlflow_logger import RUN_FILE

        path = Path(config.hydra.runtime.output_dir) / RUN_FILE
        return path.stat().st_mtime_ns if path.exists() else None

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        attached = self._run_file_time(config) not in (None, self._run_file_before)
        node = self._logger_node(config)
        if node is None and not attached:
            return
        from mnistlab.mlflow_runs import finish_run

        error = job_exception(job_return)  # return_value would print Hydra's own error line to stderr
        run_dir = Path(config.hydra.runtime.output_dir)
        try:
            if not attached and error is not None:
                self._start_failed_run(config, node)
            if attached or error is not None:
                finish_run(run_dir, error, pruned=type(error).__name__ == "TrialPruned")
        except Exception as exc:  # the job's own outcome stays what the sweep reports
            job = OmegaConf.select(config, "hydra.job.num", default=None)  # None (???) in a single run
            log.warning("could not record job %s in MLflow: %s", job, exc)

    @staticmethod
    def _start_failed_run(config: DictConfig, node: DictConfig) -> None:
        """A run for a job that failed before it built its logger, with what its config says."""
        from hydra.utils import instantiate

        from mnistlab.hparams import run_hparams

        logger = instantiate(node)
        _ = logger.experiment  # creates the run and its mlflow_run.json
        try:
            params = OmegaConf.to_container(config, resolve=True)
            params.pop("hydra", None)
            choices = OmegaConf.to_container(config.hydra.runtime.choices)
            hidden = list(config.hydra.job.config.override_dirname.exclude_keys)
            logger.log_hyperparams(run_hparams(params, list(config.hydra.overrides.task), choices, hidden))
        except Exception as exc:  # a config that cannot even resolve: the error says why
            log.debug("no params for the failed job: %s", exc)
