"""The one rule for which runs in a sweep folder are the same job, and which run of it counts.

The sweep summary (``mnistlab.sweeps``) and a sweep folder as an ensemble (``mnistlab.resume.sweep.sweep_members``)
both read it from here: it imports neither, so that both can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from mnistlab.config_keys import HARDWARE, PRESENTATION, override_key

K = TypeVar("K")
R = TypeVar("R", bound="Run")
OVERRIDES_FILE = ".hydra/overrides.yaml"


class Run(Protocol):
    """A sweep job's run, as ``last_runs`` orders them: its folder's name and its status (ok, pruned, failed)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str: ...


def job_number(name: str) -> int:
    """A sweep job folder's number, from Hydra's ``<job number>_<overrides>`` name; -1 for another name."""
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def read_overrides(job_dir: Path) -> list[str]:
    """The overrides a job folder's first launch was given (its ``.hydra/overrides.yaml``)."""
    import yaml

    return yaml.safe_load((job_dir / OVERRIDES_FILE).read_text()) or []


def hidden_keys(job_dirs: Sequence[Path], exclude_keys: Sequence[str]) -> list[str]:
    """``exclude_keys`` less those the sweep sweeps (``-m trainer.limit_train_batches=10,100``).

    Hydra leaves ``exclude_keys`` out of the folder names, as they say where or how fast a job runs; but a
    swept one tells the jobs apart, and its rows read as one setting without it. How a job shows its progress,
    its hardware (a killed sweep continues on other hardware) and the bookkeeping of a continued job or an
    Optuna trial stay out.
    """
    return unswept_keys([read_overrides(job_dir) for job_dir in job_dirs], exclude_keys)


def unswept_keys(jobs: Iterable[Sequence[str]], exclude_keys: Sequence[str]) -> list[str]:
    """``hidden_keys`` of jobs given by their overrides: ``exclude_keys`` less those the jobs set differently."""
    always = (*PRESENTATION, *HARDWARE, "resume", "callbacks.optuna_pruning.trial")
    values: dict[str, set[str | None]] = {key: set() for key in exclude_keys if key not in always}
    for overrides in jobs:
        given = {override_key(o): o for o in overrides}
        for key, seen in values.items():
            seen.add(given.get(key))
    return [key for key in exclude_keys if len(values.get(key, ())) < 2]


def shown_overrides(overrides: Iterable[str], hidden: Sequence[str]) -> list[str]:
    """A job's overrides without the ``hidden`` keys (``hidden_keys``): what tells it apart from the other jobs."""
    return [o for o in overrides if override_key(o) not in hidden]


def same_job(overrides: Iterable[str]) -> tuple[str, ...]:
    """What two runs of the same job share: their ``shown_overrides``, in any order."""
    return tuple(sorted(overrides))


def last_runs(jobs: Iterable[R], key: Callable[[R], K]) -> dict[K, R]:
    """One job per ``key``: where it ran twice (a ``cv=K`` Optuna trial killed and asked again runs its finished
    folds again), the last finished run of it, else its last run."""
    kept: dict[K, R] = {}
    for job in sorted(jobs, key=lambda j: (j.status == "ok", job_number(j.name))):
        kept[key(job)] = job
    return kept
