"""The Optuna (>= 4) search behind ``hydra/sweeper=mnistlab_optuna``, on the ask/tell API.

Each round asks ``n_jobs`` trials, launches them as Hydra jobs through the configured launcher,
reads each job's objective from its ``metrics.json`` and tells the study. Failed jobs and
non-finite objectives are told ``FAIL``, pruned jobs ``PRUNED``; the study goes on. With ``cv=K`` a trial is K jobs,
one per fold, launched fold by fold for all trials of the round: its objective is the mean over its folds, and after
each fold the running mean is reported to the study's median pruner, which may stop the trial before its next fold.
The study lives in ``storage`` (SQLite in the sweep folder by default), so the same command with the same
``hydra.sweep.dir`` resumes it until it holds ``n_trials`` trials.

A killed sweep leaves its trials RUNNING. While the sweep runs, a thread records each running
trial's heartbeat in the storage (Optuna's heartbeat, every ``heartbeat_interval`` seconds); the
continued sweep first takes in the trials whose job had finished (``job.json``), then waits for the
others' heartbeats to go stale (``grace_period``) and lets ``optuna.storages.fail_stale_trials`` mark
them ``FAIL``, upon which Optuna's ``RetryFailedTrialCallback`` asks for their parameters again as
new trials. Trials of another sweep that still beats are left alone.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnistlab_sweeps import launchers
from hydra_plugins.mnistlab_sweeps._first_trial import first_trial_refusal
from hydra_plugins.mnistlab_sweeps._search_space import (
    as_run,
    check_group_settings,
    check_not_fixed,
    check_objective,
    check_searched_key,
    check_validation,
    distribution,
    override_value,
    search_space,
    study_mistake,
)
from hydra_plugins.mnistlab_sweeps.folds import fold_job, fold_overrides
from hydra_plugins.mnistlab_sweeps.hydra_private import job_exception
from hydra_plugins.mnistlab_sweeps.optuna_sweeper import OptunaSweeperConf
from mnistlab.atomic_files import write_json
from mnistlab.config_checks import check_number
from mnistlab.errors import ConfigError
from mnistlab.resume.sweep import job_folders, job_status
from mnistlab.sweeps.summary import JOB_FILE, STUDY_FILE, objective_value

log = logging.getLogger(__name__)
# A cv trial's job numbers, recorded in the study before each fold's launch (a plain trial's job is its number).
JOBS_ATTR = "mnistlab_jobs"


def retry_callback() -> type:
    """Optuna's callback that asks a stale trial's parameters again (renamed in Optuna 4.9, the old name deprecated)."""
    from optuna import storages

    return getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback


def storage(conf: OptunaSweeperConf) -> optuna.storages.RDBStorage:
    """The study's database, with heartbeats and Optuna's retry of trials whose heartbeat went stale."""
    from optuna.storages import RDBStorage

    parameters = inspect.signature(RDBStorage).parameters
    name = "heartbeat_stale_trial_callback"  # Optuna >= 4.9; 4.0 to 4.8 call it failed_trial_callback
    name = name if name in parameters else "failed_trial_callback"
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9: not the user's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = retry_callback()(max_retry=conf.max_retry)
        return RDBStorage(
            conf.storage, heartbeat_interval=conf.heartbeat_interval, grace_period=conf.grace_period, **{name: retry}
        )


@contextmanager
def heartbeats(
    db: optuna.storages.RDBStorage, study: optuna.Study, trials: Sequence[optuna.Trial], interval: int
) -> Iterator[None]:
    """Records the trials' heartbeats every ``interval`` seconds while their jobs run (``Study.optimize`` would)."""
    stop = threading.Event()
    study_id = db.get_study_id_from_name(study.study_name)
    ids = [db.get_trial_id_from_study_id_trial_number(study_id, trial.number) for trial in trials]

    def beat() -> None:
        while True:
            for trial_id in ids:
                db.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def counted(study: optuna.Study) -> int:
    """The study's trials, less the failed ones that a retry replaced."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():  # experimental in Optuna 5: a warning at every trial otherwise
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {retry_callback().retried_trial_number(t) for t in trials} - {None}
    return len(trials) - len(retried)


class OptunaSearch:
    """Asks, launches and tells trials of one study; the Hydra sweeper delegates to it."""

    def __init__(self, conf: OptunaSweeperConf) -> None:
        self.conf = conf
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {}  # read in sweep, before any work

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.loader = hydra_context.config_loader
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _outcome(self, ret: JobReturn) -> tuple[optuna.trial.TrialState, float | None]:
        if ret.status != JobStatus.COMPLETED:
            pruned = isinstance(job_exception(ret), optuna.TrialPruned)
            return (optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL), None
        job_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        value = objective_value(job_dir, self.conf.objective)  # its job.json says failed (SweepSummary) where None
        if value is None:
            return optuna.trial.TrialState.FAIL, None
        return optuna.trial.TrialState.COMPLETE, value

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        launchers.check_launcher(self.config)
        launchers.check_same_sweep(self.config)
        try:
            for key in ("n_trials", "n_jobs"):
                check_number(f"hydra.sweeper.{key}", getattr(self.conf, key), integer=True, low=1)
            given, (arguments, params) = arguments, search_space(self.conf.params, arguments, self.loader)
            self.distributions = {k: distribution(k, v) for k, v in params.items()}
            for key in self.distributions:
                check_searched_key(self.config, key, self.distributions)
            check_group_settings(self.config, self.loader, arguments, self.distributions)
            check_not_fixed(arguments, self.distributions)
            check_objective(self.config, self.conf.objective, self.conf.direction)
            check_validation(self.config, self.conf.objective, self.distributions)
        except ConfigError as e:
            launchers.refuse(str(e))
        folds = fold_overrides(self.config, given, list(self.distributions))  # given: a swept seed is named as such
        # A setting every trial shares and each would refuse: one line before any trial (and study), not one per trial.
        if refusal := first_trial_refusal(self.conf, self.config, self.loader, arguments, self.distributions, folds):
            launchers.refuse(refusal)
        sweep_dir = launchers.lock_sweep_folder(self.config)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        c = self.conf
        db = storage(c)
        study = optuna.create_study(
            study_name=c.study_name,
            storage=db,
            direction=c.direction,
            load_if_exists=True,
        )
        if mistake := study_mistake(study, c.objective, c.direction):
            launchers.refuse(mistake)
        # A resumed study must not replay the random start-up trials of the first run.
        seed = None if c.seed is None else c.seed + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=c.n_startup_trials)
        # The pruner is not stored with the study; under cv=K it prunes between folds, here (not inside the jobs).
        study.pruner = optuna.pruners.MedianPruner(c.n_startup_trials, c.n_warmup_steps)
        self._settle_interrupted(study, sweep_dir)
        returns: list[JobReturn] = []
        if counted(study) >= c.n_trials:
            log.info("study %s already has %d trials (n_trials=%d)", c.study_name, counted(study), c.n_trials)
        while (done := counted(study)) < c.n_trials:
            with warnings.catch_warnings():  # "Heartbeat ... supposed to be used with Study.optimize": done here
                warnings.simplefilter("ignore", UserWarning)
                trials = [study.ask(self.distributions) for _ in range(min(c.n_jobs, c.n_trials - done))]
            if folds:
                # K job numbers a trial, from its number on: a retried trial's folders stay its own.
                first_job = trials[0].number * len(folds)
                returns.extend(self._cross_validate(study, db, trials, arguments, folds, first_job))
                continue
            batch = []
            for trial in trials:
                overrides = list(arguments) + [f"{k}={override_value(v)}" for k, v in trial.params.items()]
                if c.trial_override:
                    overrides.append(f"{c.trial_override}={trial.number}")
                batch.append(overrides)
            with heartbeats(db, study, trials, c.heartbeat_interval):
                results = launchers.launch_numbered(self.launcher, batch, trials[0].number)
            for trial, ret in zip(trials, results, strict=True):
                state, value = self._outcome(ret)
                study.tell(trial, value, state=state if value is None else None)
                log.debug("trial %d: %s %s", trial.number, state.name, "" if value is None else f"{value:.4f}")
            returns.extend(results)
        self._write_study(study, sweep_dir)
        return returns

    def _settle_interrupted(self, study: optuna.Study, sweep_dir: Path) -> None:
        """The RUNNING trials of a killed sweep: told their job's outcome when it ended, else failed and retried.

        A cv trial is never told from its folders: its value is the mean over all its folds.
        """
        running = (optuna.trial.TrialState.RUNNING,)
        folders = job_folders(sweep_dir)
        jobs = {t.number: t.user_attrs.get(JOBS_ATTR, [t.number]) for t in study.get_trials(deepcopy=False)}
        for trial in study.get_trials(deepcopy=False, states=running):
            folder = None if JOBS_ATTR in trial.user_attrs else folders.get(trial.number)
            status = job_status(folder) if folder else None
            value = objective_value(folder, self.conf.objective) if folder else None
            try:
                if status == "ok" and value is not None:
                    study.tell(trial.number, value)  # it finished; the sweep was killed before telling
                elif status in ("pruned", "failed"):
                    state = optuna.trial.TrialState.PRUNED if status == "pruned" else optuna.trial.TrialState.FAIL
                    study.tell(trial.number, state=state)
            except (ValueError, RuntimeError) as e:  # another sweep told it meanwhile
                log.debug("trial %d: %s", trial.number, e)
        # Trials of a killed sweep stop beating; another live sweep's keep beating and are left alone.
        deadline = time.monotonic() + self.conf.grace_period + self.conf.heartbeat_interval
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                before = {t.number for t in study.get_trials(deepcopy=False, states=running)}
                optuna.storages.fail_stale_trials(study)  # FAIL, then RetryFailedTrialCallback asks again
            left = {t.number for t in study.get_trials(deepcopy=False, states=running)}
            for number in sorted(before - left):
                for folder in filter(None, map(folders.get, jobs.get(number, ()))):
                    if job_status(folder) is None:
                        write_json(folder / JOB_FILE, {"status": "retried", "error": "killed; Optuna runs it again"})
                log.info("trial %d was killed: marked failed, its parameters are tried again", number)
            if not left or time.monotonic() > deadline:
                return
            time.sleep(self.conf.heartbeat_interval)

    def _cross_validate(
        self,
        study: optuna.Study,
        db: optuna.storages.RDBStorage,
        trials: list[optuna.Trial],
        arguments: list[str],
        folds: list[list[str]],
        first_job: int,
    ) -> list[JobReturn]:
        """Runs ``trials`` fold by fold; tells each its mean over the folds, or PRUNED/FAIL on the way."""
        values: dict[int, list[float]] = {trial.number: [] for trial in trials}
        alive, returns = list(trials), []
        for step, fold in enumerate(folds):
            trial_overrides = [[*arguments, *(f"{k}={override_value(v)}" for k, v in t.params.items())] for t in alive]
            batch = [fold_job(overrides, fold) for overrides in trial_overrides]
            for i, trial in enumerate(alive):  # so that a continued sweep knows the folders of a killed trial
                earlier = trial.user_attrs.get(JOBS_ATTR, []) if step else []  # a retry inherits its failed trial's
                trial.set_user_attr(JOBS_ATTR, [*earlier, first_job + i])
            with heartbeats(db, study, alive, self.conf.heartbeat_interval):  # a killed trial goes stale: retried
                results = launchers.launch_numbered(self.launcher, batch, first_job)
            first_job += len(batch)
            returns.extend(results)
            survivors = []
            for trial, ret in zip(alive, results, strict=True):
                state, value = self._outcome(ret)
                if value is None:  # a failed fold fails the trial
                    study.tell(trial, state=state)
                    continue
                values[trial.number].append(value)
                trial.report(sum(values[trial.number]) / len(values[trial.number]), step=step)  # the running mean
                if step < len(folds) - 1 and trial.should_prune():
                    log.info("trial %d pruned after %d folds", trial.number, step + 1)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    continue
                survivors.append(trial)
            alive = survivors
        for trial in alive:
            study.tell(trial, sum(values[trial.number]) / len(folds))
        return returns

    def _write_study(self, study: optuna.Study, sweep_dir: Path) -> None:
        states: dict[str, int] = {}
        for t in study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        record: dict[str, Any] = {"study_name": study.study_name, "objective": self.conf.objective, "states": states}
        if states.get("COMPLETE"):
            best = study.best_trial
            record["best"] = {
                "number": best.number,
                "value": best.value,
                "params": {k: as_run(v) for k, v in best.params.items()},
            }
        write_json(sweep_dir / STUDY_FILE, record)
