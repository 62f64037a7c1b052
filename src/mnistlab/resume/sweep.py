"""Continuing a sweep: the same ``-m`` command and ``hydra.sweep.dir`` keep, resume or run each job."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from mnistlab.config_keys import PLACEMENT, override_key
from mnistlab.errors import MnistlabError
from mnistlab.resume.run import RECORD_DIR, SWEEP_RECORD
from mnistlab.sweep_runs import hidden_keys, job_number, last_runs, read_overrides, same_job, shown_overrides

log = logging.getLogger(__name__)

# A sweep job's outcome in its job.json (mnistlab.sweeps.summary.JOB_FILE) that a continued sweep keeps.
FINISHED = ("ok", "pruned")


def job_folders(sweep_dir: Path) -> dict[int, Path]:
    """The job folders of a sweep by job number, as each folder's first launch recorded it (``.hydra/hydra.yaml``)."""
    import yaml

    folders = {}
    for record in Path(sweep_dir).glob(f"*/{RECORD_DIR}/hydra.yaml"):
        try:
            num = yaml.safe_load(record.read_text())["hydra"]["job"]["num"]
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            continue  # a job killed while Hydra wrote its record: it starts again
        folders[int(num)] = record.parents[1]
    return folders


def _same_job(folder: Path, overrides: Sequence[str], exclude_keys: Sequence[str]) -> bool | None:
    """Whether ``folder`` was launched with ``overrides``, apart from ``exclude_keys`` (Hydra's folder naming).

    None where its record cannot be read (a job killed while Hydra wrote it).
    """
    import yaml

    hidden = (*exclude_keys, "resume")
    try:
        saved = read_overrides(folder)
    except (OSError, yaml.YAMLError):
        return None
    return same_job(shown_overrides(saved, hidden)) == same_job(shown_overrides(overrides, hidden))


def job_status(folder: Path) -> str | None:
    """The status a sweep job's ``job.json`` records (ok, pruned, failed), or None before its end."""
    import json

    from mnistlab.sweeps.summary import JOB_FILE

    try:
        return json.loads((folder / JOB_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def jobs_to_launch(
    sweep_dir: Path, jobs: Sequence[tuple[int, Sequence[str]]], exclude_keys: Sequence[str] = ()
) -> list[tuple[int, list[str]]]:
    """What a sweep still has to run of ``jobs`` (job number, overrides), when its folder holds an earlier launch.

    - A job whose ``job.json`` says ``ok`` or ``pruned`` is finished: it is kept as it is, not launched.
    - A job with a ``checkpoints/last.ckpt`` (killed, or failed, e.g. on a full disk) continues in its
      folder: ``resume=<folder>`` is added to its overrides (``resume`` is a placement key, so the
      folder's name stays), and the job resumes like ``scripts/train.py resume=<folder>``.
    - A job folder without one trained nothing that can be kept (it stopped in its start-up or first
      epoch): it is emptied, and the job runs from the start, as does a job without a folder.
    """
    folders = job_folders(sweep_dir)
    todo = []
    for num, overrides in jobs:
        folder = folders.get(num)
        same = None if folder is None else _same_job(folder, overrides, exclude_keys)
        if folder is not None and same is False:
            # The command is the sweep's own (launchers.check_same_sweep), but the jobs it makes are not: the
            # sweeper's params (an experiment file's hydra.sweeper.params) changed. Job n twice, in one summary.
            raise MnistlabError(
                f"hydra.sweep.dir={sweep_dir} holds job {num} of another sweep ({folder.name}), where this one's "
                f"job {num} is {' '.join(overrides)}: its hydra.sweeper.params changed since; give a new folder"
            )
        if not same:
            todo.append((num, list(overrides)))
        elif job_status(folder) in FINISHED:
            print(f"job {num} kept: it finished in an earlier launch ({folder.name})", flush=True)
        elif (folder / "checkpoints" / "last.ckpt").is_file():
            log.info("job %d continues from %s", num, folder / "checkpoints" / "last.ckpt")
            quote = "'" if "'" not in str(folder) else '"'  # a job folder's name holds = and , (its overrides)
            todo.append((num, [*overrides, f"resume={quote}{folder.resolve()}{quote}"]))
        else:
            shutil.rmtree(folder)  # logs of a start that saved nothing; the job's new start writes its own
            todo.append((num, list(overrides)))
    return todo


def is_sweep_folder(path: Path) -> bool:
    """A sweep's folder (``-m``), not any folder of runs (``outputs/<date>/``): Hydra's record of the sweep is in it."""
    return (path / SWEEP_RECORD).is_file()


def is_run_folder(path: Path) -> bool:
    """A run folder: its ``checkpoints/``, or checkpoint files of its own."""
    return (path / "checkpoints").is_dir() or any(path.glob("*.ckpt"))


def _job_number(folder: Path) -> tuple[int, str]:
    return job_number(folder.name), folder.name


def _sweep_jobs(sweep_dir: Path) -> list[Path]:
    return sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=_job_number)


def finished_run(job: Path) -> bool:
    """Whether a run or sweep job ended well: its ``job.json`` says ok, or, without one, its ``metrics.json`` is there.

    A job without ``job.json`` is still running or was interrupted (its checkpoints are half-trained), or is
    a plain run (``train.py`` without ``-m``) or of a sweep from before ``job.json``: only the test's
    ``metrics.json``, written as the run ends, tells.
    """
    status = job_status(job)
    return status == "ok" if status is not None else (job / "metrics.json").is_file()


class _JobRun(NamedTuple):
    """A sweep job folder as ``last_runs`` orders it: ok where it finished (``finished_run``)."""

    name: str
    status: str
    folder: Path


def sweep_exclude_keys(sweep_dir: Path) -> list[str]:
    """The keys a sweep left out of its job folders' names: its own ``hydra.job.config.override_dirname.exclude_keys``
    as its ``multirun.yaml`` saved it, which a command may have changed (``...exclude_keys=[]``).

    The summary was written with these; ``PLACEMENT`` where the record holds the project's default, saved
    unresolved (``${mnistlab.placement_keys:}``), or no list (an unreadable record, another interpolation).
    """
    import yaml

    try:
        record = yaml.safe_load((sweep_dir / SWEEP_RECORD).read_text())
        keys = record["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return list(PLACEMENT)
    return [str(key) for key in keys] if isinstance(keys, list) else list(PLACEMENT)


def sweep_members(sweep_dir: Path) -> list[Path]:
    """The run folders of a sweep's finished jobs (``-m``), in job order.

    A failed or pruned job is left out, and so is one still running or interrupted. A job finished twice (a killed
    ``cv=K`` Optuna trial's fold, run again by its retry, perhaps on other hardware) counts once, as its last
    finished run: the summary's rule (``mnistlab.sweep_runs``), with the keys the sweep's own ``exclude_keys``
    left out of its folder names (``sweep_exclude_keys``).
    """
    jobs = _sweep_jobs(sweep_dir)
    hidden = hidden_keys(jobs, sweep_exclude_keys(sweep_dir))
    runs = [_JobRun(job.name, "ok" if finished_run(job) else "unfinished", job) for job in jobs]
    kept = last_runs(runs, lambda run: same_job(shown_overrides(read_overrides(run.folder), hidden)))
    last = {id(run) for run in kept.values()}
    return [run.folder for run in runs if id(run) in last and run.status == "ok" and is_run_folder(run.folder)]


def unfinished_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep that hold checkpoints of a job still running or interrupted."""
    return [
        job
        for job in _sweep_jobs(sweep_dir)
        if job_status(job) is None and not (job / "metrics.json").is_file() and is_run_folder(job)
    ]


def missing_folds(members: Sequence[Path], exclude_keys: Sequence[str] = PLACEMENT) -> list[str]:
    """The folds each ``cv=K`` configuration of a sweep's finished jobs (``sweep_members``) lacks; ``exclude_keys``:
    the sweep's (``sweep_exclude_keys``).

    E.g. ``["fold 2 of cv=3"]``, or ``["folds 0, 1 of cv=2 optimizer.lr=0.1"]`` in a grid x folds: a fold that
    failed, was pruned or interrupted, or is still to run (a sweep folder read while its sweep runs) leaves
    its configuration's ensemble short of a full cross-validation. [] for a sweep without ``cv``.
    """
    hidden = [*hidden_keys(members, exclude_keys), "cv", "data.fold", "seed"]  # what the folds of one setting share
    folds: dict[tuple[str, ...], tuple[int, set[int]]] = {}
    for job in members:
        overrides = read_overrides(job)
        given = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
        if not given.get("cv", "").isdigit() or not given.get("data.fold", "").isdigit():
            continue  # not a fold of a cv=K sweep
        setting = same_job(shown_overrides(overrides, hidden))
        folds.setdefault(setting, (int(given["cv"]), set()))[1].add(int(given["data.fold"]))
    lacking = []
    for setting, (k, done) in folds.items():
        if missing := sorted(set(range(k)) - done):
            which = f"fold{'s' * (len(missing) > 1)} {', '.join(map(str, missing))} of cv={k}"
            lacking.append(" ".join([which, *setting]) if len(folds) > 1 else which)
    return lacking


def configurations(members: Sequence[Path], exclude_keys: Sequence[str] = PLACEMENT) -> int:
    """How many configurations a sweep's finished jobs (``sweep_members``) are, their folds and seeds aside.

    One for the folds of a ``cv=K`` sweep or a sweep over seeds; more for a grid or a search, whose ensemble
    averages different recipes, the worst ones included.
    """
    hidden = [*hidden_keys(members, exclude_keys), "cv", "data.fold", "seed"]
    return len({same_job(shown_overrides(read_overrides(job), hidden)) for job in members})
