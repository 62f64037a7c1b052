"""What a ``ckpt_path`` names: a checkpoint file, a run folder, a sweep folder, or a list of them (an ensemble)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mnistlab.config_keys import shell_path_override
from mnistlab.errors import CheckpointNotFoundError, MnistlabError
from mnistlab.resume.sweep import (
    configurations,
    is_sweep_folder,
    missing_folds,
    sweep_exclude_keys,
    sweep_members,
    unfinished_jobs,
)
from mnistlab.resume.sweep import is_run_folder as _is_run_folder

PREFER = ("best.ckpt", "last.ckpt")  # what a run folder stands for, in this order


def find_checkpoint(
    path: str | Path,
    prefer: tuple[str, ...] = PREFER,
    announce: bool = True,
    setting: str = "ckpt_path",
) -> Path:
    """The checkpoint file meant by ``ckpt_path``: the file itself, or the preferred checkpoint of a run folder.

    A run folder (or its ``checkpoints/`` folder) stands for its first existing checkpoint in
    ``prefer``; the choice is printed (unless ``announce`` is off), so the user knows which one ran.

    Raises:
        MnistlabError: When the path does not exist, or the folder holds none of ``prefer``.
    """
    if isinstance(path, str) and not path.strip():  # an unset shell variable: Path('') is the working folder
        raise MnistlabError(
            f"{setting}={path!r} names no checkpoint: give a .ckpt file or a run folder (. for this one)"
        )
    path = Path(path).expanduser()
    if not path.is_dir():
        if not path.is_file():
            raise CheckpointNotFoundError(f"checkpoint not found: {path}")
        return path
    for name in prefer:
        for candidate in (path / "checkpoints" / name, path / name):
            if candidate.is_file():
                if announce:
                    print(f"{setting}={path} is a folder: using {candidate}", file=sys.stderr)
                return candidate
    raise MnistlabError(f"{setting}={path} is a folder without {' or '.join(prefer)} (in it or in checkpoints/)")


def _tested_ensemble(folder: Path, setting: str) -> list[Path] | None:
    """The members of an ensemble a ``cv=K`` sweep tested (``<sweep>/ensembles/<n>/``); None for another folder.

    One configuration's folds, where the sweep folder itself stands for every finished job (a grid x folds).
    """
    from mnistlab.sweeps.folds import ENSEMBLE_FILE  # a light module; the sweeps package builds on this one

    record = folder / ENSEMBLE_FILE
    if not record.is_file():
        return None
    try:
        named = json.loads(record.read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MnistlabError(f"{setting}={folder}: {ENSEMBLE_FILE} cannot be read ({type(e).__name__})") from None
    found = [folder.parent.parent / name for name in named]  # relative to the sweep folder
    if missing := [str(p) for p in found if not p.is_file()]:
        raise MnistlabError(f"{setting}={folder}: the ensemble's members are gone: {', '.join(missing)}")
    print(f"{setting}={folder} is the ensemble of {len(found)} fold models that its sweep tested", file=sys.stderr)
    return found


def _refuse_a_member_twice(found: list[tuple[str | Path, Path]], setting: str) -> None:
    """Refuses, naming both spellings, a list's ``(item, checkpoint it means)`` pairs that hold one member twice.

    One checkpoint twice, or one run twice where a folder stands for one of its checkpoints and the list names
    another (``[<run>/checkpoints/last.ckpt,<run>]``, the folder meaning ``best.ckpt``): it would weigh twice in
    the mean. Two files of one run, each named, are the user's choice (a snapshot ensemble).
    """
    seen: dict[Path, tuple[str, bool]] = {}  # a checkpoint, and its run, -> how the list named it, by a folder?
    for item, file in found:
        named = str(item) if Path(item).expanduser() == file else f"{item} ({file})"
        by_folder = Path(item).expanduser().is_dir()
        run = file.parent.parent if file.parent.name == "checkpoints" else file.parent  # as find_checkpoint looks
        if (earlier := seen.get(file.resolve())) is not None:
            again = f"{item} twice" if earlier[0] == named else f"one checkpoint twice, as {earlier[0]} and as {named}"
            raise MnistlabError(f"{setting} names {again}: each member of an ensemble counts once; give it once")
        if (other := seen.get(run.resolve())) is not None and (by_folder or other[1]):
            raise MnistlabError(
                f"{setting} names the run {run} twice, as {other[0]} and as {named}: "
                "a run counts once in an ensemble; give it once"
            )
        seen.setdefault(run.resolve(), (named, by_folder))
        seen[file.resolve()] = (named, by_folder)


def find_checkpoints(path: str | Path | Sequence[str | Path], setting: str = "ckpt_path") -> list[Path]:
    """The checkpoint files ``ckpt_path`` means: one for a file or a run folder, several for an ensemble.

    An ensemble is a sweep folder (every finished job's checkpoint, e.g. the K folds of ``cv=K``), the
    folder of an ensemble a ``cv=K`` sweep tested (``<sweep>/ensembles/<n>``: that configuration's folds), or
    a list of checkpoint files and run folders (``ckpt_path=[a,b,c]``).

    Raises:
        MnistlabError: When a path does not exist, or a folder holds no checkpoint and no finished job.
    """
    if not isinstance(path, (str, Path)):
        if isinstance(path, Mapping) or not isinstance(path, Sequence):  # {a: 1} would read as its keys
            raise MnistlabError(f"{setting}={path} is not a path: give a .ckpt file, a run or sweep folder, or a list")
        found = [(item, f) for item in path for f in find_checkpoints(item, setting)]
        if not found:
            raise MnistlabError(f"{setting}=[] names no checkpoint")
        _refuse_a_member_twice(found, setting)
        return [f for _, f in found]
    folder = Path(path).expanduser()
    if not folder.is_dir() or _is_run_folder(folder) or not str(path).strip():  # '': find_checkpoint refuses it
        return [find_checkpoint(path, setting=setting)]
    if (tested := _tested_ensemble(folder, setting)) is not None:
        return tested
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and _is_run_folder(p))
    if runs and not is_sweep_folder(folder):  # e.g. outputs/<date>: that day's runs, of any models, are no one model
        # The example is one that find_checkpoint takes (a best or last.ckpt), not loose .ckpt files.
        runs.sort(key=lambda run: not any((d / n).is_file() for d in (run, run / "checkpoints") for n in PREFER))
        shown = ",".join(str(run) for run in runs[:2]) + (",..." if runs[2:] else "")
        raise MnistlabError(
            f"{setting}={folder} is no sweep folder (no multirun.yaml) but holds {len(runs)} "
            f"run{'s' * (len(runs) != 1)}: give one run folder, e.g. {setting}={runs[0]}, or list the runs "
            f"to average them as one ensemble, {setting}=[{shown}]"
        )
    members, unfinished = sweep_members(folder), unfinished_jobs(folder)
    numbers = ", ".join(job.name.split("_", 1)[0] for job in unfinished)
    finish = f"(the sweep's own command plus {shell_path_override('hydra.sweep.dir', folder)} finishes it)"
    if not members and unfinished:  # its only checkpoints are half-trained: say whose, and what finishes them
        several = len(unfinished) > 1
        raise MnistlabError(
            f"{setting}={folder} is a sweep folder without finished jobs: job{'s' * several} {numbers} "
            f"{'are' if several else 'is'} still running or {'were' if several else 'was'} interrupted {finish}"
        )
    if not members:
        raise MnistlabError(
            f"{setting}={folder} is a folder without best.ckpt or last.ckpt (in it or in checkpoints/) "
            "and without finished sweep jobs"
        )
    found = [find_checkpoint(job, announce=False) for job in members]
    names = ", ".join(sorted({f.name for f in found}))
    exclude_keys = sweep_exclude_keys(folder)
    count = configurations(members, exclude_keys)
    grid = sorted(folder.glob("ensembles/*/ensemble.json"))  # a grid x folds: not one configuration's folds
    mixed = f"; its {count} configurations together, {_best_tested(folder, exclude_keys, setting)}" if grid[1:] else ""
    print(
        f"{setting}={folder} is a sweep: an ensemble of its {len(found)} finished job{'s' * (len(found) != 1)} "
        f"({names}){mixed}",
        file=sys.stderr,
    )
    if not grid[1:] and count > 1:  # a grid or a search: say so
        print(f"{setting}={folder}: {_several_configurations(members, count, setting)}", file=sys.stderr)
    if unfinished:  # half-trained: their checkpoints would weigh in unnoticed
        print(f"{setting}={folder}: left out job {numbers}, still running or interrupted {finish}", file=sys.stderr)
    if lacking := missing_folds(members, exclude_keys):  # a cross-validation short of a fold is no full one; say which
        more = f"; and {len(lacking) - 3} more configurations" if lacking[3:] else ""  # e.g. pruned Optuna trials
        print(
            f"{setting}={folder}: its finished jobs lack {'; '.join(lacking[:3])}{more} "
            "(failed, pruned, interrupted or still to run)",
            file=sys.stderr,
        )
    return found


def _best_tested(folder: Path, exclude_keys: Sequence[str], setting: str) -> str:
    """Which tested ensemble of a grid x folds to take instead: the configuration the cross-validation table
    ranks first (best mean validation score, ``mnistlab.sweeps.folds.fold_groups``)."""
    from mnistlab.sweep_runs import job_number  # the sweeps package builds on this module
    from mnistlab.sweeps.folds import ENSEMBLES, fold_groups, stats
    from mnistlab.sweeps.summary import collect_jobs

    groups = [group for group in fold_groups(collect_jobs(folder, exclude_keys), folder) if group.ensemble]
    key = stats(groups)[0]
    best = next((group for group in groups if group.stat(key)), None)
    if best is None:  # no fold validated: nothing but the test set could rank them
        return "each tested in its own ensembles/<n> folder"
    path = folder / ENSEMBLES / str(min(job_number(job.name) for job in best.jobs))
    return f"the best by mean {key} is {shell_path_override(setting, path)} ({best.stat(key)[0]:.4f})"


def _several_configurations(members: list[Path], count: int, setting: str) -> str:
    """What to know of an ensemble of a grid's or a search's jobs: they are ``count`` recipes, the worst ones
    included (an Optuna search's ensemble scored 0.27 where its best trial alone validated at 0.55), and which
    job validated best, by the sweep summary's own ranking (``mnistlab.sweeps.ranking``); none where no job
    validated (the summary would rank by the test set)."""
    from mnistlab.sweeps.ranking import best_first, ranking_key  # the sweeps package builds on this module
    from mnistlab.sweeps.summary import JobRecord, read_metrics

    jobs = [JobRecord(str(job), [], metrics=read_metrics(job)) for job in members]
    text = f"its jobs are {count} configurations, not the folds or seeds of one, and the ensemble averages them all"
    key = ranking_key(jobs)
    if key == "test/acc":  # no job validated: a best by the test set would be picked on it
        return text
    best = min(jobs, key=lambda j: best_first(j.get(key), key))
    return (
        f"{text}; the best by validation alone is {shell_path_override(setting, best.name)} ({key} {best.get(key):.4f})"
    )
