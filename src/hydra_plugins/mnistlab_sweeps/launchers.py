"""Launching a sweep's jobs: only those its folder does not hold finished; launchers that cannot run here refused."""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.mnistlab_sweeps.hydra_private import JOBLIB_LAUNCHER_LOGGER
from mnistlab.config_keys import HARDWARE, PRESENTATION, override_key, path_override
from mnistlab.errors import MnistlabError
from mnistlab.resume.sweep import jobs_to_launch
from mnistlab.run_folders import lock_run_folder, release_claimed_folders
from mnistlab.sweep_runs import unswept_keys
from mnistlab.user_errors import EXIT_USER_ERROR


def refuse(message: str) -> NoReturn:
    """Ends the sweep with one ``error:`` line (code 2); before any job, it leaves no sweep folder behind."""
    release_claimed_folders()  # the sweep folder, made when Hydra read its name, if it is still empty
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def check_launcher(config: DictConfig) -> None:
    """Refuses a launcher that cannot run here or a worker count with no meaning, before any job.

    ``hydra/launcher=submitit_slurm`` without SLURM would fail on the first job's ``sbatch`` call, and
    joblib's ``n_jobs=0`` inside ``Parallel``, each with a traceback.
    """
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        refuse(
            "hydra/launcher=submitit_slurm needs SLURM, but there is no sbatch command on this machine; "
            "run on a SLURM login node, or use hydra/launcher=submitit_local or joblib here"
        )
    if target.endswith("JoblibLauncher") and launcher.get("n_jobs") == 0:
        refuse("hydra.launcher.n_jobs=0 runs no job: give the number of workers (-1: one per core)")
    # An Optuna search launches hydra.sweeper.n_jobs jobs at a time (one fold of each trial under cv=K): more
    # workers than that sit idle, and the search took as long as without them, without a word.
    workers, trials = launcher.get("n_jobs"), config.hydra.sweeper.get("n_jobs")
    optuna = str(config.hydra.sweeper.get("_target_", "")).endswith("OptunaSweeper") and isinstance(trials, int)
    idle = isinstance(workers, int) and (workers > trials or (workers < 0 and trials == 1)) if optuna else False
    if idle and target.endswith("JoblibLauncher"):
        print(
            f"warning: hydra.launcher.n_jobs={workers} joblib workers, but the search launches "
            f"hydra.sweeper.n_jobs={trials} trial{'s' * (trials != 1)} at a time, so only {trials} of them "
            f"work{'s' * (trials == 1)}: set hydra.sweeper.n_jobs={workers if workers > 0 else 'N'} too",
            file=sys.stderr,
        )


def check_same_sweep(config: DictConfig) -> None:
    """Refuses a sweep folder that holds another sweep: the two sweeps' jobs would mix in one summary.

    A sweep continues in its folder with its own command, which its ``multirun.yaml`` recorded; Hydra's
    settings (the ``hydra.sweep.dir`` that names the folder, a launcher) and where the jobs run may differ,
    but not the sweeper's that make its jobs (``changed_sweep``), nor the jobs' settings (``changed_settings``).
    """
    folder = Path(config.hydra.sweep.dir)
    saved = folder / "multirun.yaml"
    if not saved.is_file() and any((folder / name).exists() for name in (".hydra", "checkpoints", "metrics.json")):
        refuse(  # before: the sweep wrote its jobs and summary into the run, which resume= then took for a sweep
            f"hydra.sweep.dir={folder} holds a run (.hydra/, checkpoints/), which a sweep would turn into a "
            "sweep folder: give a new folder"
        )
    if not saved.is_file():
        return
    free = (*PRESENTATION, *HARDWARE)  # how it is shown, where it runs
    launched = OmegaConf.load(saved)
    before, now = (
        [o for o in overrides if not override_key(o).startswith(("hydra.", "hydra/")) and override_key(o) not in free]
        for overrides in (launched.hydra.overrides.task, config.hydra.overrides.task)
    )
    if sorted(before) == sorted(now) and before != now:  # the order of the lists numbers the jobs, hence the folders
        refuse(
            f"hydra.sweep.dir={config.hydra.sweep.dir} was launched with its settings in another order "
            f"({' '.join(before)}), which numbers its jobs otherwise: continue it with them in that order"
        )
    if sorted(before) != sorted(now):
        refuse(
            f"hydra.sweep.dir={config.hydra.sweep.dir} holds another sweep ({' '.join(before) or 'no overrides'}), "
            "whose jobs this one's would mix with: continue it with its own command, or give a new folder"
        )
    # Hydra's settings are free on the command line, but not those that say which jobs the sweep runs: an edited
    # hydra.sweeper.params (in an experiment file, or its override) made the new launch run other jobs than the first.
    if changed := changed_sweep(launched, config):
        refuse(
            f"{_launched_with(config, changed)}, which makes other jobs: its command or a config file it reads (e.g. "
            "conf/experiment/*.yaml) changed since; restore it, or give a new folder"
        )
    # The same command, but a config file it reads (conf/experiment/*.yaml) edited since: the kept and resumed
    # jobs ran the recipe that multirun.yaml recorded, the new ones would run another, in one summary.
    if changed := changed_settings(launched, config, free):
        refuse(
            f"{_launched_with(config, changed)}: a config file it reads (e.g. conf/experiment/*.yaml) changed since, "
            "and its jobs would mix two recipes; restore the file, or give a new folder"
        )


def _launched_with(config: DictConfig, changed: Sequence[tuple[str, object, object]]) -> str:
    """The head of a continued sweep's refusal: the first setting that differs between launches, and how many more."""
    key, old, new = changed[0]
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    folder = config.hydra.sweep.dir
    return f"hydra.sweep.dir={folder} was launched with {key}={old}, but its command now gives {key}={new}{more}"


def _settings(node: object, prefix: str = "") -> dict[str, object]:
    """A plain config as dotted keys and leaf values (``_target_`` included: it names the class)."""
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in _settings(value, f"{prefix}{key}.").items()}
    return {prefix.removesuffix("."): node}


def _job_settings(config: DictConfig) -> dict[str, object]:
    """The settings a sweep's jobs train with, as written; Hydra's own node says how to run them, not what."""
    plain = OmegaConf.to_container(config, resolve=False)
    return _settings({key: value for key, value in plain.items() if key != "hydra"})


# The sweeper's settings that do not say which jobs it runs: how many at once, how many in all (a continued
# search runs to its new n_trials), how a killed trial is retried; and an Optuna search's objective and direction,
# which the continued study refuses itself, naming the ones it keeps (_search_space.study_mistake).
SWEEPER_FREE = (
    "max_batch_size",
    "n_jobs",
    "n_trials",
    "heartbeat_interval",
    "grace_period",
    "max_retry",
    "objective",
    "direction",
)


def _sweep_settings(config: DictConfig) -> dict[str, object]:
    """Hydra's settings that say which jobs a sweep runs: its sweeper (``_target_``) and the sweeper's settings, the
    grid's or the search space's ``params`` included (``SWEEPER_FREE`` aside), as written."""
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    return _settings({key: value for key, value in sweeper.items() if key not in SWEEPER_FREE}, "hydra.sweeper.")


def _changes(
    old: dict[str, object], new: dict[str, object], free: Sequence[str] = ()
) -> list[tuple[str, object, object]]:
    kept = [k for k in sorted(old.keys() | new.keys()) if not any(k == f or k.startswith(f"{f}.") for f in free)]
    return [(k, old.get(k, "<absent>"), new.get(k, "<absent>")) for k in kept if old.get(k, _NONE) != new.get(k, _NONE)]


def changed_settings(before: DictConfig, now: DictConfig, free: Sequence[str] = ()) -> list[tuple[str, object, object]]:
    """``(key, before, now)`` for each setting of a sweep's jobs (``free`` keys aside) whose value differs between
    two launches, as written (interpolations unresolved)."""
    return _changes(_job_settings(before), _job_settings(now), free)


def changed_sweep(before: DictConfig, now: DictConfig) -> list[tuple[str, object, object]]:
    """``(key, before, now)`` for each of Hydra's settings that say which jobs a sweep runs (``_sweep_settings``)
    whose value differs between two launches, as written."""
    return _changes(_sweep_settings(before), _sweep_settings(now))


_NONE = object()


def lock_sweep_folder(config: DictConfig) -> Path:
    """Makes the sweep folder, holds it for this process (``run_folders.lock_run_folder``) and pins it for the jobs.

    Refuses one that another sweep is using: the same command twice at once, whose second launch would
    empty the first's running jobs' folders (``jobs_to_launch``) and train into them.

    ``hydra.sweep.dir`` is ``${mnistlab.new_folder:multirun}``, a folder made by the process that resolves it, and
    Hydra composes each job's config again from the sweep's overrides: a parallel launcher's worker (joblib) made a
    folder of its own, out of the summary's and the ensemble's sight. The folder resolved here is added to those
    overrides (unless the command gives it).
    """
    folder = Path(config.hydra.sweep.dir)
    folder.mkdir(parents=True, exist_ok=True)
    if busy := lock_run_folder(folder, "hydra.sweep.dir", "sweep"):
        refuse(busy)
    overrides = config.hydra.overrides.hydra
    if not any(override_key(o) == "hydra.sweep.dir" for o in overrides):
        with read_write(overrides), open_dict(overrides):
            overrides.append(path_override("hydra.sweep.dir", folder))
    return folder


def name_swept_placement(config: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
    """Keeps the placement keys that the jobs set differently in their folder names and HParams records.

    ``exclude_keys`` (``config_keys.PLACEMENT``) leaves out of a job's folder name and hyperparameters what says
    where or how briefly it runs, so that jobs differing only there are one experiment. A sweep over one
    (``trainer.limit_train_batches=100,1000``, a learning curve) named its jobs alike and recorded no column that
    tells them apart. The summary's rule (``sweep_runs.unswept_keys``: hardware and presentation stay out) narrows
    the list, which is the sweep's (its ``multirun.yaml``) and, as an override of Hydra's the jobs inherit, each job's.
    """
    exclude = list(config.hydra.job.config.override_dirname.exclude_keys)
    kept = unswept_keys(jobs, exclude)
    if kept == exclude:
        return
    setting = "hydra.job.config.override_dirname.exclude_keys"
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.job.config.override_dirname.exclude_keys = kept
        # One value of it: a command's own list is replaced, the jobs compose with Hydra's overrides and these.
        hydra_overrides = [o for o in config.hydra.overrides.hydra if override_key(o) != setting]
        config.hydra.overrides.hydra = [*hydra_overrides, f"{setting}=[{','.join(kept)}]"]


def launch_missing(
    launcher: Launcher, config: DictConfig, batch: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Launches the jobs of ``batch`` (numbered from ``initial_job_idx``) that the sweep folder does not hold finished.

    A continued sweep (the same command and ``hydra.sweep.dir``) keeps its finished jobs and continues
    the interrupted ones (``mnistlab.resume.sweep.jobs_to_launch``). A launcher numbers its jobs from
    ``initial_job_idx`` on, so each run of consecutive job numbers is one launch: every job keeps its
    number, hence its folder.
    """
    exclude = list(config.hydra.job.config.override_dirname.exclude_keys)
    try:
        todo = jobs_to_launch(Path(config.hydra.sweep.dir), list(enumerate(batch, initial_job_idx)), exclude)
    except MnistlabError as e:
        refuse(str(e))
    returns: list[JobReturn] = []
    for _, run in itertools.groupby(enumerate(todo), key=lambda item: item[1][0] - item[0]):
        jobs = [job for _, job in run]
        returns += launch_numbered(launcher, [overrides for _, overrides in jobs], jobs[0][0])
    return returns


def launch_numbered(launcher: Launcher, batch: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """``launcher.launch``, whose ``#N : overrides`` lines name each job by its number in the sweep.

    Hydra's joblib launcher counted them from 0 in each launch (``#0 #1 #0 #1 #0`` for 5 jobs in batches of 2);
    its jobs had their own numbers all along. Other launchers number their lines from ``initial_job_idx``.
    """
    from mnistlab.process.jobs import launch_lines_numbered

    with launch_lines_numbered(JOBLIB_LAUNCHER_LOGGER, initial_job_idx):
        return list(launcher.launch(batch, initial_job_idx=initial_job_idx))
