"""MLflow beside TensorBoard: Lightning's ``MLFlowLogger`` on one SQLite database, one MLflow run per job.

With ``mnistlab.mlflow_runs`` the only modules of mnistlab that import ``mlflow`` (the ``[mlflow]``
extra), and only inside functions, so ``logger=mlflow`` without the extra stops with one line saying what to install.
Each run folder keeps its MLflow run id in ``mlflow_run.json``: ``resume=RUN_DIR`` continues
that run, and the sweep's Hydra callback (``hydra_plugins.mnistlab_sweeps.callbacks.MLflowRuns``)
uploads the report files and sets the run's final state when the job ends (``mnistlab.mlflow_runs``).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from mnistlab.atomic_files import write_json
from mnistlab.errors import MnistlabError, WriteError, first_line, is_write_error
from mnistlab.extras import require
from mnistlab.lightning_private import mlflow_experiment_needed, mlflow_run_started, mlflow_set_experiment
from mnistlab.user_errors import exception_chain, one_line

RUN_FILE = "mlflow_run.json"
ERROR_TAGS = ("error", "mlflow.note.content")  # a failed launch's one-line error and its traceback
# What SQLite says where the system would say ENOSPC or EACCES.
SQLITE_WRITE_ERRORS = {"database or disk is full": errno.ENOSPC, "attempt to write a readonly database": errno.EACCES}


def artifact_root(tracking_uri: str) -> str | None:
    """``<database folder>/mlartifacts`` for a SQLite store; None lets a tracking server choose."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "mlartifacts").as_uri()


def check_server(tracking_uri: str, timeout: float = 5.0) -> None:
    """Refuses (``MnistlabError``, one line) an ``http(s)://`` tracking server that does not answer within
    ``timeout``: MLflow would retry for minutes, warning only."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # a server answered, even if not on /health
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MnistlabError(
            f"logger.mlflow.tracking_uri={tracking_uri}: no MLflow server answers there ({reason}); start it "
            "(mlflow server ...), or leave tracking_uri out for the local store"
        ) from None


def choose_experiment(name: str | None, preset: str | None, sweep_dir: str | None) -> str:
    """``name`` if given, else the ``experiment`` preset, else the sweep's folder as given (one per sweep)."""
    return name or preset or sweep_dir or "runs"


def git_commit(where: Path = Path(__file__).parent) -> str | None:
    """The commit of the checkout that holds this code, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def store_write_error(exc: BaseException, tracking_uri: str) -> WriteError | None:
    """A ``WriteError`` naming the store, when ``exc`` says that the store cannot be written (full, read-only)."""
    store = f"the MLflow store {tracking_uri.removeprefix('sqlite:///')}"
    for seen in exception_chain(exc):
        if is_write_error(seen):
            return WriteError(store, seen)  # type: ignore[arg-type]
        for text, code in SQLITE_WRITE_ERRORS.items():
            if text in str(seen):
                return WriteError(store, OSError(code, os.strerror(code)))
    return None


def with_retry(call: Callable[[], Any], tries: int = 6, tracking_uri: str | None = None) -> Any:
    """Runs ``call``, again after a pause while another process holds the SQLite write lock.

    SQLite waits for a busy writer (MLflow sets a 20 s busy timeout), except when two
    transactions that both read first want to write: one then fails at once with "database
    is locked". Its transaction was rolled back, so running it again loses and repeats nothing.
    A store that cannot be written (``tracking_uri`` given) raises a ``WriteError`` naming it.
    """
    for attempt in range(tries):
        try:
            return call()
        except Exception as exc:
            if tracking_uri and (failure := store_write_error(exc, tracking_uri)):
                raise failure from exc
            if "database is locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    return None


class MLflowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger``, named after the sweep and job, resumable from its run folder.

    Metrics keep Lightning's step, which mnistlab sets to optimizer steps. A resumed run
    (``resume`` with ``mlflow_run.json`` in ``run_dir``) continues the saved run: points at
    steps it already holds (logged by the killed process after its last checkpoint) are not
    logged twice, and params keep their first value (MLflow's params are immutable).

    Args:
        tracking_uri: ``sqlite:///<path>/mlflow.db`` or a tracking server's ``http(s)://`` address.
        run_dir: The run folder (holds ``mlflow_run.json``).
        experiment_name: MLflow experiment; None: ``preset``, else ``sweep_dir`` in a sweep, else ``runs``.
        preset: The ``experiment`` preset's name, if any.
        sweep_dir: The sweep's folder (used in a sweep, i.e. when ``job_num`` is set).
        job_num: The job's number in a ``-m`` sweep; None for a single run.
        run_name: The run's name (the job's overrides); None or empty: the run folder's name.
        tags: Extra run tags, e.g. the Hydra overrides (a list is joined with spaces); None values are left out.
        resume: Continue the run saved in ``run_dir`` instead of starting one.
        artifact_location: Where a new experiment stores artifacts; None: ``mlartifacts`` beside
            a SQLite database, the server's choice otherwise.
    """

    def __init__(
        self,
        tracking_uri: str,
        run_dir: str,
        experiment_name: str | None = None,
        preset: str | None = None,
        sweep_dir: str | None = None,
        job_num: int | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume: str | bool | None = False,
        artifact_location: str | None = None,
    ) -> None:
        require("logger=mlflow", "mlflow", "mlflow")
        from mlflow.exceptions import MlflowException

        self.run_file = Path(run_dir) / RUN_FILE
        run_id = None
        if resume and self.run_file.exists():
            saved = json.loads(self.run_file.read_text())
            run_id, tracking_uri = saved["run_id"], saved["tracking_uri"]
        run_tags = {k: " ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in (tags or {}).items()}
        run_tags = {k: v for k, v in run_tags.items() if v not in ("", "None")}
        run_tags["run_dir"] = str(Path(run_dir).resolve())
        if job_num is not None:
            run_tags |= {"sweep.job_num": str(job_num), "sweep.dir": str(Path(sweep_dir or "").resolve())}
        else:
            sweep_dir = None
        if commit := git_commit():
            run_tags["mlflow.source.git.commit"] = commit
        check_server(tracking_uri)
        try:
            with store_lock(tracking_uri):  # its MlflowClient opens the store: the first process creates the tables
                super().__init__(
                    experiment_name=choose_experiment(experiment_name, preset, sweep_dir),
                    run_name=run_name or Path(run_dir).name,
                    tracking_uri=tracking_uri,
                    tags=run_tags,
                    artifact_location=artifact_location or artifact_root(tracking_uri),
                    run_id=run_id,
                )
        except MlflowException as e:  # a file:// store, which MLflow 3.17 refuses (a traceback)
            raise MnistlabError(
                f"logger.mlflow.tracking_uri={tracking_uri}: MLflow refuses this store "
                f"({first_line(e).split('. ')[0]}); leave tracking_uri out for the local SQLite store, or give one: "
                "sqlite:///<folder>/mlflow.db"
            ) from None
        self.store_uri = tracking_uri  # the saved run's store when resumed
        self._resumed = run_id is not None
        self._attached = False
        self._logged_up_to: dict[str, int] = {}  # resumed run: last step held per metric

    @property
    def experiment(self) -> Any:
        if rank_zero_only.rank != 0:
            return super().experiment  # Lightning's stand-in: only rank zero talks to MLflow
        if mlflow_experiment_needed(self):
            with_retry(lambda: mlflow_set_experiment(self, ensure_experiment))
        client = super().experiment
        if not self._attached:
            self._attached = True
            self._attach(client)
        return client

    def _attach(self, client: Any) -> None:
        if self._resumed:
            client.update_run(self.run_id, status="RUNNING")
            # The stopped launch's error (a Ctrl-C's KeyboardInterrupt, a SIGTERM, a full disk) is not this
            # run's any more: left, a finished run showed it as its error and traceback.
            held = client.get_run(self.run_id).data.tags
            for key in ERROR_TAGS if ERROR_TAGS[0] in held else ():  # a description of the user's own stays
                if key in held:
                    with_retry(lambda key=key: client.delete_tag(self.run_id, key))
            for key in client.get_run(self.run_id).data.metrics:
                self._logged_up_to[key] = max(m.step for m in client.get_metric_history(self.run_id, key))
        else:
            self._end_replaced_runs(client)
        record = {"run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": self.store_uri}
        write_json(self.run_file, record)

    def _end_replaced_runs(self, client: Any) -> None:
        """Ends as ``KILLED`` the runs of this folder left ``RUNNING``: a continued sweep starts again the jobs
        that were killed before their first checkpoint (``mnistlab.resume.sweep.jobs_to_launch``), in a new run."""
        run_dir = self.tags["run_dir"] if self.tags else None
        stale = client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'")
        note = f"killed before its first checkpoint; the job started again as run {self.run_id}"
        for run in stale:
            if run.info.run_id != self.run_id and run_dir and run.data.tags.get("run_dir") == run_dir:
                with_retry(lambda run=run: client.set_tag(run.info.run_id, "error", note))
                with_retry(lambda run=run: client.set_terminated(run.info.run_id, "KILLED"))

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = dict(params)
        if self._resumed:
            held = self.experiment.get_run(self.run_id).data.params
            params = {k: v for k, v in params.items() if k not in held}
        if params:
            with_retry(lambda: super(MLflowLogger, self).log_hyperparams(params), tracking_uri=self.store_uri)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._logged_up_to and step is not None:
            metrics = {k: v for k, v in metrics.items() if step > self._logged_up_to.get(k, -1)}
        if metrics:
            with_retry(lambda: super(MLflowLogger, self).log_metrics(metrics, step), tracking_uri=self.store_uri)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # Lightning calls finalize("failed") while it handles the exception that stopped the fit.
        if status == "failed" and mlflow_run_started(self) and (error := sys.exc_info()[1]) is not None:
            record_error(self.experiment, self.run_id, error)
            if isinstance(error, KeyboardInterrupt | SIGTERMException):  # stopped, not failed: resume= continues it
                status = "KILLED"
        with_retry(lambda: super(MLflowLogger, self).finalize(status), tracking_uri=self.store_uri)


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created if missing (by one of several parallel jobs)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # another job created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def store_lock(tracking_uri: str) -> AbstractContextManager[Any]:
    """An inter-process lock on a SQLite store (``<database>.lock``); no lock for a tracking server.

    MLflow creates a new database's tables by migrating it step by step, and two processes that
    start on the same new file at once (two runs launched together, a sweep beside a run) make one
    of them fail ("Online migration expected to match one row"). Whoever holds the lock creates
    the tables; the others find them made.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{database}.lock")


def prepare_store(tracking_uri: str, name: str, artifact_location: str | None = None) -> None:
    """Creates the database (its tables) and the experiment once, before a sweep's parallel jobs start."""
    from mlflow import MlflowClient

    check_server(tracking_uri)
    with store_lock(tracking_uri):
        ensure_experiment(MlflowClient(tracking_uri), name, artifact_location or artifact_root(tracking_uri))


def record_error(client: Any, run_id: str, error: BaseException) -> None:
    """Keeps the error on the run: a one-line ``error`` tag and the traceback as the run's description."""
    # The user's error, not Hydra's instantiation wrapper around it: its class and one-line message.
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    error_tag, note_tag = ERROR_TAGS
    with_retry(lambda: client.set_tag(run_id, error_tag, one_line(error)[:5000]))
    with_retry(lambda: client.set_tag(run_id, note_tag, f"```\n{text[-7000:]}\n```"))
