"""``cv=K`` in a sweep: every configuration the sweeper makes runs once per fold (``data.fold=0..K-1``), and
the folds' ensemble is tested when the sweep ends.

Fold ``i`` trains with ``seed=S+i`` (``S``: the sweep's ``seed``), written into its job's overrides: members
with one seed share their initialisation and shuffling, and their ensemble gains little over them.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnistlab_sweeps.hydra_private import IN_PROCESS_LAUNCHER
from hydra_plugins.mnistlab_sweeps.interruptions import ending_interrupted
from hydra_plugins.mnistlab_sweeps.launchers import refuse
from mnistlab.config_checks import SEED_NULL
from mnistlab.config_keys import override_key
from mnistlab.data.specs import TRAIN_SIZE
from mnistlab.sweeps.folds import SEED_KEY

FOLD_KEYS = ("data.fold", "data.folds")

log = logging.getLogger(__name__)


def cv_mistake(cv: object, arguments: list[str], searched: Sequence[str] = ()) -> str | None:
    """Why ``cv``, the sweep's ``arguments`` and the keys its search sets per trial cannot run as a cross-validation.

    Returns:
        The reason in one line, or None.
    """
    swept = [o for o in OverridesParser.create().parse_overrides(arguments) if o.is_sweep_override()]
    if any(o.key_or_group == "cv" for o in swept):  # Hydra leaves a swept key out of the sweep's own config
        return "cv takes one number of folds per sweep (e.g. cv=5), not a list; run one sweep per K"
    if cv is None:
        return None
    # cv itself first: -m seed=1,2 cv=abc was told about the seeds, as if cv=abc were a number of folds.
    if isinstance(cv, bool) or not isinstance(cv, int):
        return f"cv={cv!r} is not an integer: must be an integer >= 2 (the number of folds)"
    if cv < 2:
        return f"cv={cv!r} is out of range: must be an integer >= 2 (the number of folds)"
    if any(o.key_or_group == SEED_KEY for o in swept):
        return f"cv={cv} gives fold i the seed S+i: set one seed S (e.g. seed=7), not a list"
    if cv > TRAIN_SIZE:  # refused now: Hydra composes every job of a batch before the first one runs
        return f"cv={cv} is more than the {TRAIN_SIZE} training images: a fold needs at least one"
    if given := [a for a in arguments if override_key(a) in FOLD_KEYS]:
        return f"cv={cv} runs every fold itself: drop {' '.join(given)}"
    if held_out := [a for a in arguments if override_key(a) == "data.val_size" and a.split("=", 1)[1].strip() != "0"]:
        return f"cv={cv} validates each job on its fold: drop {' '.join(held_out)}"
    # fold_job would silently replace a searched seed; a searched fold setting would clash with the fold's own.
    if clash := [k for k in searched if override_key(k) in (*FOLD_KEYS, SEED_KEY, "data.val_size")]:
        return f"cv={cv} sets data.fold and seed per fold: take {', '.join(clash)} out of hydra.sweeper.params"
    return None


def fold_overrides(config: DictConfig, arguments: list[str], searched: Sequence[str] = ()) -> list[list[str]]:
    """What each fold's job adds to its configuration's overrides, ``[["data.fold=0", "seed=S"], ...]``.

    ``searched`` are the keys a search sets per trial (``hydra.sweeper.params``).

    ``seed=null`` is refused (``mnistlab.config_checks.SEED_NULL``): Lightning would seed every fold with 0.

    ``[]`` without ``cv``. Exits with one ``error:`` line (code 2) for a setting that cannot run, before any
    job starts.
    """
    cv = config.get("cv")
    if mistake := cv_mistake(cv, arguments, searched):
        refuse(mistake)
    if cv is None:
        return []
    # S: the last seed=S of the overrides (a grid sweeper's hydra.sweeper.params come first, which the
    # sweep's own config does not hold), else the sweep's config.
    given = [o.value() for o in OverridesParser.create().parse_overrides(arguments) if o.key_or_group == SEED_KEY]
    seed = given[-1] if given else config.get(SEED_KEY)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        refuse(f"seed={seed!r} is not an integer")
    if seed is None:  # before any job: each would be refused (Lightning's seed_everything(None) seeds all with 0)
        refuse(SEED_NULL)
    return [[f"data.fold={i}", f"{SEED_KEY}={seed + i}"] for i in range(cv)]


def fold_job(overrides: list[str], fold: list[str]) -> list[str]:
    """One fold's job: a configuration's ``overrides`` (its own ``seed=S`` replaced) and that fold's."""
    return [o for o in overrides if override_key(o) != SEED_KEY] + fold


class FoldEnsembles(Callback):
    """After a ``cv=K`` sweep, tests each configuration's ensemble of its fold models (before the summary reads it).

    Its reports go into ``<sweep>/ensembles/<n>/`` (``mnistlab.sweeps.folds``); a failure to build one is a
    warning, never the sweep's failure.
    """

    def __init__(self) -> None:
        self._preload: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_preload": None}  # a parallel launcher pickles the callbacks for its jobs: the thread stays here

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Under a parallel launcher the jobs run in other processes, and this one imports Lightning for the
        # ensemble only after them (about 3 s of a 5-fold notebook_hidden sweep's 27): import it meanwhile.
        # Nothing else imports here while the jobs run; on_multirun_end waits for it.
        if config.get("cv") is not None and OmegaConf.select(config, "hydra.launcher._target_") != IN_PROCESS_LAUNCHER:
            self._preload = threading.Thread(target=importlib.import_module, args=("lightning.pytorch",), daemon=True)
            self._preload.start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # A Ctrl-C while the ensembles are tested (seconds to minutes, after the sweeper's own hint ended):
        # the line that continues, not a traceback; the same command keeps every job and tests them again.
        with ending_interrupted(config):
            self._test_ensembles(config)

    def _test_ensembles(self, config: DictConfig) -> None:
        if self._preload is not None:
            self._preload.join()
        if config.get("cv") is None:
            return
        from mnistlab import process
        from mnistlab.errors import MnistlabError
        from mnistlab.sweeps.folds import evaluate_ensembles, fold_groups
        from mnistlab.sweeps.summary import collect_jobs
        from mnistlab.user_errors import one_line

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect_jobs(sweep_dir, list(config.hydra.job.config.override_dirname.exclude_keys))
        accelerator = OmegaConf.select(config, "trainer.accelerator")
        # The ensemble is tested in the sweep's own process, which a parallel launcher's jobs never configured.
        process.configure_job()
        try:
            tested = evaluate_ensembles(sweep_dir, jobs, accelerator)  # best mean val/acc first, as the summary
            grid = len(fold_groups(jobs)) > 1  # even where only one configuration had folds enough to test
            for group, folder in tested:
                # A grid of configurations: each line names its own (cv=3 model=linear).
                which = f" of {' '.join(group.overrides)}" if grid else ""
                print(f"ensemble of the folds{which}: test/acc {group.ensemble['test/acc']:.4f} (report in {folder})")
                if OmegaConf.select(config, "logger.mlflow") is not None:
                    self._mlflow_parent(sweep_dir, group, folder)
        except Exception as exc:  # the folds' own results stand; the summary shows no ensemble column then
            if not isinstance(exc, MnistlabError):  # a bug: its traceback; a user's case (no checkpoint) is its line
                log.warning("the fold ensemble could not be tested: %s", one_line(exc), exc_info=exc)
            print(f"warning: the fold ensemble could not be tested: {one_line(exc)}", file=sys.stderr)
        sys.stdout.flush()

    @staticmethod
    def _mlflow_parent(sweep_dir: Path, group: Any, report_dir: Path) -> None:
        """One MLflow parent run over the folds' runs, with the ensemble's metrics and report."""
        from mnistlab.mlflow_runs import nest_runs
        from mnistlab.sweeps.folds import parent_metrics

        runs = [sweep_dir / job.name for job in group.jobs]
        name = "cv " + " ".join(group.overrides)
        if parent := nest_runs(runs, name, parent_metrics(group), report_dir):
            log.info("MLflow: parent run %s over %d fold runs", parent, len(runs))
