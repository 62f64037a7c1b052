"""The Optuna (>= 4) search behind ``hydra/sweeper=mnistlab_optuna``, on the ask/tell API.

Each round asks ``n_jobs`` trials, launches them as Hydra jobs through the configured launcher,
reads each job's objective from its ``metrics.json`` and tells the study. Failed jobs and
non-finite objectives are told ``FAIL``, pruned jobs ``PRUNED``; the study goes on. With ``cv=K``
a trial is K jobs, one per fold, launched fold by fold for all trials of the round: its objective
is the mean over its folds, and after each fold the running mean is reported to the study's median
pruner, which may stop the trial before its next fold. The study
lives in ``storage`` (SQLite in the sweep folder by default), so the same command with the same
``hydra.sweep.dir`` resumes it until it holds ``n_trials`` trials.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnistlab_sweeps.folds import fold_overrides
from hydra_plugins.mnistlab_sweeps.launchers import check_launcher
from hydra_plugins.mnistlab_sweeps.optuna_sweeper import OptunaSweeperConf
from mnistlab.atomic_files import write_json
from mnistlab.sweeps.summary import STUDY_FILE

log = logging.getLogger(__name__)


def distribution(name: str, spec: dict[str, Any]) -> optuna.distributions.BaseDistribution:
    """``{type: float|int|categorical, low, high, log, choices}`` -> an Optuna distribution."""
    kind = spec.get("type")
    if kind == "float":
        return optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "int":
        return optuna.distributions.IntDistribution(spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(spec["choices"]))
    raise ValueError(f"hydra.sweeper.params.{name}: type must be float, int or categorical, not {kind!r}")


def override_value(value: Any) -> str:
    # Four significant digits keep job folder names readable; TPE does not need more.
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class OptunaSearch:
    """Asks, launches and tells trials of one study; the Hydra sweeper delegates to it."""

    def __init__(self, conf: OptunaSweeperConf) -> None:
        self.conf = conf
        self.distributions = {k: distribution(k, dict(v)) for k, v in self.conf.params.items()}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _outcome(self, ret: JobReturn) -> tuple[optuna.trial.TrialState, float | None]:
        if ret.status != JobStatus.COMPLETED:
            # The job's exception (``ret.return_value`` would print Hydra's "Error executing job" and raise it).
            pruned = isinstance(ret._return_value, optuna.TrialPruned)
            return (optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL), None
        metrics_file = Path(ret.hydra_cfg.hydra.runtime.output_dir) / "metrics.json"
        value = json.loads(metrics_file.read_text()).get(self.conf.objective) if metrics_file.is_file() else None
        if value is None or not math.isfinite(value):
            log.warning(
                "%s: %s is %s; the trial is marked failed", metrics_file.parent.name, self.conf.objective, value
            )
            return optuna.trial.TrialState.FAIL, None
        return optuna.trial.TrialState.COMPLETE, float(value)

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        check_launcher(self.config)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        c = self.conf
        study = optuna.create_study(
            study_name=c.study_name,
            storage=c.storage,
            direction=c.direction,
            load_if_exists=True,
        )
        # A resumed study must not replay the random start-up trials of the first run.
        seed = None if c.seed is None else c.seed + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=c.n_startup_trials)
        folds = fold_overrides(self.config, arguments)
        # The pruner is not stored with the study; under cv=K it prunes between folds, here (not inside the jobs).
        study.pruner = optuna.pruners.MedianPruner(c.n_startup_trials, c.n_warmup_steps)
        # Trials still RUNNING belong to an interrupted earlier run: nobody will finish them.
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        returns: list[JobReturn] = []
        if len(study.trials) >= c.n_trials:
            log.info("study %s already has %d trials (n_trials=%d)", c.study_name, len(study.trials), c.n_trials)
        while (done := len(study.trials)) < c.n_trials:
            trials = [study.ask(self.distributions) for _ in range(min(c.n_jobs, c.n_trials - done))]
            if folds:
                returns.extend(self._cross_validate(study, trials, arguments, folds, first_job=done * len(folds)))
                continue
            batch = []
            for trial in trials:
                overrides = list(arguments) + [f"{k}={override_value(v)}" for k, v in trial.params.items()]
                if c.trial_override:
                    overrides.append(f"{c.trial_override}={trial.number}")
                batch.append(overrides)
            results = list(self.launcher.launch(batch, initial_job_idx=trials[0].number))
            for trial, ret in zip(trials, results, strict=True):
                state, value = self._outcome(ret)
                study.tell(trial, value, state=state if value is None else None)
                log.debug("trial %d: %s %s", trial.number, state.name, "" if value is None else f"{value:.4f}")
            returns.extend(results)
        self._write_study(study, sweep_dir)
        return returns

    def _cross_validate(
        self, study: optuna.Study, trials: list[optuna.Trial], arguments: list[str], folds: list[str], first_job: int
    ) -> list[JobReturn]:
        """Runs ``trials`` fold by fold; tells each its mean over the folds, or PRUNED/FAIL on the way."""
        values: dict[int, list[float]] = {trial.number: [] for trial in trials}
        alive, returns = list(trials), []
        for step, fold in enumerate(folds):
            batch = [[*arguments, *(f"{k}={override_value(v)}" for k, v in t.params.items()), fold] for t in alive]
            results = list(self.launcher.launch(batch, initial_job_idx=first_job))
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
            record["best"] = {"number": best.number, "value": best.value, "params": best.params}
        write_json(sweep_dir / STUDY_FILE, record)
