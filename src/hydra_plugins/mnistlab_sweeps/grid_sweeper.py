"""Hydra's basic grid sweeper, except that a failed job does not end the sweep, a killed sweep continues,
and ``cv=K`` runs K folds.

Hydra's ``BasicSweeper`` re-raises the first failed job after its batch, which skips the
later batches and ``on_multirun_end`` (so no summary). This one records and goes on; the
summary callback turns failures into a non-zero exit status. Run again with the same
``hydra.sweep.dir``, it launches only what that folder does not hold finished (``launch_missing``).
With ``cv=K`` every combination runs once per fold (``data.fold=i seed=S+i``, ``folds.fold_overrides``),
and the folds of one configuration are consecutive jobs.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from hydra_plugins.mnistlab_sweeps.folds import fold_job, fold_overrides
from hydra_plugins.mnistlab_sweeps.hydra_private import basic_sweeper, basic_sweeper_conf, sweep_params
from hydra_plugins.mnistlab_sweeps.interruptions import ending_interrupted
from hydra_plugins.mnistlab_sweeps.launchers import (
    check_launcher,
    check_same_sweep,
    launch_missing,
    lock_sweep_folder,
    name_swept_placement,
    refuse,
)
from mnistlab.sweeps.shared_refusal import refusal_before_launch

log = logging.getLogger(__name__)


def repeated_job(jobs: list[list[str]]) -> tuple[int, int] | None:
    """The numbers of the first two jobs that make the same run (the same overrides), if any."""
    first: dict[tuple[str, ...], int] = {}
    for num, job in enumerate(jobs):
        if (seen := first.setdefault(tuple(sorted(job)), num)) != num:
            return seen, num
    return None


@dataclass
class GridSweeperConf(basic_sweeper_conf()):  # type: ignore[misc]
    _target_: str = "hydra_plugins.mnistlab_sweeps.grid_sweeper.GridSweeper"
    # A mapping, not Hydra's null: +hydra.sweeper.params.model='linear,hidden' on the command line adds a key to
    # it (OmegaConf cannot add one under null: an AssertionError traceback).
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="mnistlab")


class GridSweeper(basic_sweeper()):  # type: ignore[misc]
    """Every combination of the comma-separated overrides, in batches of ``max_batch_size``."""

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        check_launcher(self.config)
        check_same_sweep(self.config)
        params_conf = sweep_params(self)
        params_conf.extend(arguments)
        folds = fold_overrides(self.config, params_conf)  # the command's overrides and hydra.sweeper.params
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        if folds:  # each combination once per fold, re-batched
            jobs = [fold_job(job, fold) for batch in self.overrides for job in batch for fold in folds]
            size = self.max_batch_size or len(jobs)
            self.overrides = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        # A setting every job shares and each would refuse: one line before any job, not one per job.
        jobs = [job for batch in self.overrides for job in batch]
        if refusal := refusal_before_launch(self.config, self.hydra_context.config_loader, jobs):
            refuse(refusal)
        if twice := repeated_job(jobs):  # -m model=linear,linear: a typo, most likely, that costs a whole job
            log.warning(
                "jobs %d and %d are the same run (%s): a value is listed twice", *twice, " ".join(jobs[twice[0]])
            )
        name_swept_placement(self.config, jobs)  # trainer.limit_train_batches=100,1000: in the folder names too
        sweep_dir = lock_sweep_folder(self.config)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns: list[list[JobReturn]] = []
        initial_job_idx = 0
        with ending_interrupted(self.config):
            while not self.is_done():
                batch = self.get_job_batch()
                self.validate_batch_is_legal(batch)
                # A failed job is recorded by the summary callback (its console line, job.json); the sweep goes on.
                results = launch_missing(self.launcher, self.config, batch, initial_job_idx)
                initial_job_idx += len(batch)
                returns.append(results)
        return returns
