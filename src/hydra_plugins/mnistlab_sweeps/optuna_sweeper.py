"""``hydra/sweeper=mnistlab_optuna``: an Optuna (>= 4) TPE search, ``python scripts/train.py -m hparams_search=optuna``.

Hydra imports this module whenever it starts, so Optuna itself (the ``sweep`` extra) is imported
only when the sweeper is used, in ``_optuna_search``.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mnistlab_sweeps.optuna_sweeper.OptunaSweeper"
    study_name: str = "mnistlab"
    storage: str = "sqlite:///${hydra.sweep.dir}/optuna.db"
    direction: str = "maximize"
    objective: str = "val/acc_best"
    n_trials: int = 20
    n_jobs: int = 1
    seed: int | None = None
    n_startup_trials: int = 5  # random trials before TPE (and, via the job callback, before median pruning)
    n_warmup_steps: int = 0  # epochs before a trial can be pruned (read by the job's pruning callback)
    trial_override: str | None = "callbacks.optuna_pruning.trial"
    # A killed sweep's trials: their heartbeat goes stale after grace_period s; the continued sweep then
    # marks them failed and tries their parameters again, up to max_retry times (null: no limit).
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int | None = 2
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="mnistlab_optuna", node=OptunaSweeperConf, provider="mnistlab")


class OptunaSweeper(Sweeper):
    """Runs ``n_trials`` trials of the study in ``storage`` (see ``_optuna_search.OptunaSearch``)."""

    def __init__(self, **conf: Any) -> None:
        from hydra_plugins.mnistlab_sweeps._optuna_search import OptunaSearch

        self.search = OptunaSearch(OptunaSweeperConf(**conf))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        from hydra_plugins.mnistlab_sweeps.interruptions import ending_interrupted

        with ending_interrupted(self.search.config, search=True):
            return self.search.sweep(arguments)
