"""A setting every trial of an Optuna search shares and refuses: one line before the first trial, not one per trial.

``python scripts/train.py -m hparams_search=optuna trainer.max_epochs=0`` printed ``job N failed: ConfigError:
trainer.max_epochs=0 is out of range ...`` for each trial, then ``error: 2 of 2 jobs failed``. The grid sweeper
checks its jobs before launching (``mnistlab.sweeps.shared_refusal``); a search knows only its first trial before
it runs. That trial's parameters come from a study of its own, in memory, with the sampler a new study gets (the
same class and seed), so the study's trials and its sampler's draws are left as they were: a new study's trial 0
is the trial checked. The first trial alone cannot tell a shared setting from a bad sampled value, so the command's
fixed overrides are checked next, with the search space's keys at the config's values: only a line with which both
are refused stops the search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig

from hydra_plugins.mnistlab_sweeps._search_space import override_value
from hydra_plugins.mnistlab_sweeps.folds import fold_job
from hydra_plugins.mnistlab_sweeps.optuna_sweeper import OptunaSweeperConf
from mnistlab.sweeps.shared_refusal import refusal_before_launch


def first_trial_params(
    conf: OptunaSweeperConf, distributions: Mapping[str, optuna.distributions.BaseDistribution]
) -> dict[str, Any]:
    """The parameters a new study of ``conf`` proposes for its trial 0, asked of a study of their own.

    The sweep's study is made later with ``TPESampler(seed=conf.seed, n_startup_trials=conf.n_startup_trials)``; a
    sampler with that seed draws trial 0 alike wherever it is asked (its own random state, no global one), and a
    study in memory is told nothing and left behind: the sweep's storage is not touched.
    """
    sampler = optuna.samplers.TPESampler(seed=conf.seed, n_startup_trials=conf.n_startup_trials)
    # "A new study created in memory": of a study the user never sees; quiet for this one call, then as it was.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=sampler, direction=conf.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study.ask(dict(distributions)).params


def first_trial_refusal(
    conf: OptunaSweeperConf,
    config: DictConfig,
    loader: Any,
    arguments: list[str],
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    folds: list[list[str]],
) -> str | None:
    """The line with which both the first trial and the command's fixed overrides are refused, else None.

    Args:
        conf: The sweeper's settings.
        config: The sweep's config (the sweeper's ``config``).
        loader: Hydra's config loader, which composes a job (``hydra_context.config_loader``).
        arguments: The command's overrides (no searched key: ``check_not_fixed``).
        distributions: The search space, in the order the study asks it.
        folds: What each fold's job adds under ``cv=K`` (``folds.fold_overrides``), else empty.
    """
    params = first_trial_params(conf, distributions)
    trial = list(arguments) + [f"{k}={override_value(v)}" for k, v in params.items()]
    fixed = list(arguments)
    if conf.trial_override:  # as the sweep gives its trial 0
        trial.append(f"{conf.trial_override}=0")
        fixed.append(f"{conf.trial_override}=0")
    jobs = [fold_job(trial, folds[0]), fold_job(fixed, folds[0])] if folds else [trial, fixed]
    return refusal_before_launch(config, loader, jobs)
