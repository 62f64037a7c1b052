"""The table that compares the jobs of a sweep: ``summary.csv`` and ``summary.md`` in the sweep folder.

A job folder is any ``<sweep>/<job>/`` with ``.hydra/overrides.yaml``. Its results come from
``metrics.json`` (written by ``mnistlab.training.fit_and_test``) and ``job.json`` (status, error
and wall time, written by the sweep callback when the job ends).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab.atomic_files import write_atomic
from mnistlab.config_keys import override_key
from mnistlab.sweep_runs import hidden_keys, last_runs, read_overrides, same_job, shown_overrides
from mnistlab.sweeps import folds
from mnistlab.sweeps.ranking import HIGHER_IS_BETTER, best_first, describe, ranking_key

JOB_FILE = "job.json"
GROUP_KEYS = ("test/acc", "test/loss", "val/acc_best", "val/loss_best")
STUDY_FILE = "optuna.json"
COLUMNS = ("job", "overrides", "test/acc", "test/loss", "val/acc_best", "epochs", "seconds", "status", "error")
# Only in a sweep where some run kept its best checkpoint by val/loss: after val/acc_best.
LOSS_COLUMN = "val/loss_best"


@dataclass
class JobRecord:
    """One job of a sweep, as read back from its folder."""

    name: str
    overrides: list[str]
    status: str = "ok"
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    def get(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return float(value) if isinstance(value, (int, float)) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}  # null or a list: no record either


def read_metrics(job_dir: Path) -> dict[str, Any]:
    """A job's ``metrics.json``, or {} when it has none (yet)."""
    return _read_json(job_dir / "metrics.json")


def _objective(job_dir: Path, objective: str) -> tuple[float | None, str | None]:
    """A finished job's value for its Optuna trial, or why it has none (the study then marks the trial failed)."""
    value = read_metrics(job_dir).get(objective)  # None for a missing or damaged metrics.json
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        found = "missing from its metrics.json" if value is None else f"{value!r} in its metrics.json"
        return None, f"the Optuna trial failed: its objective {objective} is {found}"
    return float(value), None


def objective_mistake(job_dir: Path, objective: str) -> str | None:
    """Why a finished job gives its Optuna trial no value: ``objective`` missing from its ``metrics.json``, or not a
    finite number; None where it has one (``objective_value``)."""
    return _objective(job_dir, objective)[1]


def objective_value(job_dir: Path, objective: str) -> float | None:
    """A finished job's value for its Optuna trial: ``objective`` from its ``metrics.json``, None where it has none."""
    return _objective(job_dir, objective)[0]


def with_earlier_launches(seconds: Any, metrics: dict[str, Any]) -> Any:
    """A job's ``seconds`` (its launch's) plus the training time of a resumed job's earlier launches, up to the
    checkpoint it resumed from (``fit_seconds_earlier`` in its ``metrics.json``); as given for another job."""
    earlier = metrics.get("fit_seconds_earlier")
    if isinstance(seconds, int | float) and isinstance(earlier, int | float):
        return round(seconds + earlier, 1)
    return seconds


def read_job(job_dir: Path, exclude_keys: Sequence[str] = ()) -> JobRecord:
    """Reads one job folder; a job with neither ``job.json`` nor ``metrics.json`` counts as failed."""
    shown = shown_overrides(read_overrides(job_dir), exclude_keys)
    metrics = read_metrics(job_dir)
    job = _read_json(job_dir / JOB_FILE)
    status = job.get("status", "ok" if metrics else "failed")
    error = job.get("error", "" if metrics else "no metrics.json (the job did not finish)")
    seconds = with_earlier_launches(job.get("seconds"), metrics)
    return JobRecord(job_dir.name, shown, status, error, metrics, seconds)


def collect_jobs(sweep_dir: Path, exclude_keys: Sequence[str] = ()) -> list[JobRecord]:
    """All job folders of ``sweep_dir``, best first (see ``ranking_key``), failed jobs last.

    Their overrides leave out ``exclude_keys``, except those the sweep sweeps (``hidden_keys``).
    """
    folders = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    hidden = hidden_keys(folders, exclude_keys)
    jobs = [read_job(folder, hidden) for folder in folders]
    key = ranking_key(jobs)
    return sorted(jobs, key=lambda j: (*best_first(j.get(key), key), j.name))


def distinct_runs(jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """One job per set of overrides: where the same job ran twice (a ``cv=K`` Optuna trial killed and asked
    again runs its finished folds again), the last finished run of it, else its last run.

    Statistics over seeds or folds count each run once: twice the same seed is no second seed.
    """
    chosen = {id(job) for job in last_runs(jobs, lambda job: same_job(job.overrides)).values()}
    return [job for job in jobs if id(job) in chosen]  # in the order given


def _without_seed(job: JobRecord) -> tuple[str, ...]:
    return tuple(sorted(o for o in job.overrides if override_key(o) != folds.SEED_KEY))


def seed_groups(jobs: Sequence[JobRecord], keys: Sequence[str] = GROUP_KEYS) -> list:
    """Mean and sample std of ``keys`` over jobs that differ only in ``seed``.

    Returns:
        ``[(overrides without seed, n, {key: (mean, std)}), ...]`` for every configuration
        run with two or more seeds that finished, best mean first (see ``ranking_key``).
    """
    groups: dict[tuple[str, ...], list[JobRecord]] = {}
    for job in distinct_runs(jobs):
        if job.status == "ok" and any(override_key(o) == folds.SEED_KEY for o in job.overrides):
            groups.setdefault(_without_seed(job), []).append(job)
    rows = []
    for overrides, members in groups.items():
        if len(members) < 2:
            continue
        stats = {}
        for key in keys:
            values = [v for m in members if (v := m.get(key)) is not None]
            if len(values) >= 2:
                stats[key] = (statistics.fmean(values), statistics.stdev(values))
        rows.append((list(overrides), len(members), stats))
    key = ranking_key(jobs)
    return sorted(rows, key=lambda r: best_first(r[2][key][0] if key in r[2] else None, key))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _columns(jobs: Sequence[JobRecord]) -> tuple[str, ...]:
    if any(job.get(LOSS_COLUMN) is not None for job in jobs):
        at = COLUMNS.index("val/acc_best") + 1
        return (*COLUMNS[:at], LOSS_COLUMN, *COLUMNS[at:])
    return COLUMNS


def _row(job: JobRecord, columns: Sequence[str]) -> list[str]:
    epochs = job.get("epochs")
    cells = {
        "job": job.name,
        "overrides": " ".join(job.overrides),
        "epochs": "" if epochs is None else str(int(epochs)),
        "seconds": _fmt(job.seconds, 1),
        "status": job.status,
        "error": job.error,
    }
    return [cells[c] if c in cells else _fmt(job.get(c)) for c in columns]


def to_csv(jobs: Sequence[JobRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns := _columns(jobs))
    writer.writerows(_row(job, columns) for job in jobs)
    return out.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def to_markdown(jobs: Sequence[JobRecord], study: dict[str, Any] | None = None) -> str:
    """The summary as Markdown: the jobs (best marked), seed groups and the Optuna study's best trial."""
    failed = sum(job.status == "failed" for job in jobs)
    key = ranking_key(jobs)
    pruned = sum(job.status == "pruned" for job in jobs)
    retried = sum(job.status == "retried" for job in jobs)  # an Optuna trial killed, whose parameters ran again
    counts = f"{len(jobs) - failed - pruned - retried} finished, " + (f"{pruned} pruned, " if pruned else "")
    counts += (f"{retried} retried, " if retried else "") + f"{failed} failed"
    lines = [f"# Sweep summary: {len(jobs)} jobs, {counts}", ""]
    ranked = any(job.get(key) is not None for job in jobs)  # none: all failed, or smoke tests (fast_dev_run)
    lines += [describe(key) if ranked else f"Not ranked: no job recorded {', '.join(HIGHER_IS_BETTER)}.", ""]
    columns = _columns(jobs)
    lines += ["| best | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    best = next((job for job in jobs if job.status == "ok" and job.get(key) is not None), None)
    for job in jobs:
        mark = "**best**" if job is best else " "
        lines.append(f"| {mark} | " + " | ".join(_md_cell(c) for c in _row(job, columns)) + " |")
    if groups := seed_groups(jobs):
        keys = [k for k in GROUP_KEYS if k in columns]
        lines += ["", "## Mean ± std over seeds", "", f"| overrides | seeds | {' | '.join(keys)} |"]
        lines.append("|---|---|" + "---|" * len(keys))
        for overrides, n, stats in groups:
            cells = [f"{s[0]:.4f} ± {s[1]:.4f}" if (s := stats.get(k)) else "" for k in keys]
            lines.append(f"| {_md_cell(' '.join(overrides))} | {n} | " + " | ".join(cells) + " |")
    if study and study.get("states"):
        lines += ["", f"## Optuna study `{study['study_name']}`", ""]
        lines.append(f"Trials: {', '.join(f'{n} {state.lower()}' for state, n in sorted(study['states'].items()))}.")
        if best_trial := study.get("best"):
            lines.append(f"Best trial {best_trial['number']}: {study['objective']} = {best_trial['value']:.4f} with")
            lines.append("")
            lines += [f"- `{k}` = {v}" for k, v in best_trial["params"].items()]
        else:  # e.g. an objective that no job's metrics.json holds: each trial failed, however its job ended
            lines.append(f"No trial completed: no best trial by {study['objective']} (each job's metrics.json).")
    return "\n".join(lines) + "\n"


def configuration_values(jobs: Sequence[JobRecord], key: str) -> tuple[list[tuple[str, list[float]]], list[str]]:
    """``key`` of the finished jobs, grouped by configuration (their overrides but seed and fold), best mean first.

    Returns:
        (label, values) per configuration, each label without the overrides that every job shares; and those.
    """
    groups: dict[tuple[str, ...], list[float]] = {}
    for job in distinct_runs(jobs):
        if job.status == "ok" and (value := job.get(key)) is not None:
            setting = tuple(o for o in job.overrides if override_key(o) not in folds.PER_FOLD)
            groups.setdefault(setting, []).append(value)
    # What every job shares goes under the title ("every job: ..."), failed ones too, which a value the finished
    # ones share may not be theirs; with one configuration, its label keeps it all.
    every = [[o for o in job.overrides if override_key(o) not in folds.PER_FOLD] for job in jobs]
    shared = [o for o in next(iter(groups), ()) if all(o in setting for setting in every)] if len(groups) > 1 else []
    rows = [(" ".join(o for o in setting if o not in shared) or "(no override)", v) for setting, v in groups.items()]
    return sorted(rows, key=lambda row: best_first(statistics.fmean(row[1]), key)), shared


def write_summary(sweep_dir: Path, exclude_keys: Sequence[str] = ()) -> tuple[list[JobRecord], str]:
    """Writes ``summary.csv``, ``summary.md`` and, for two finished jobs or more, ``summary.png`` into ``sweep_dir``.

    ``summary.png`` is the ranking metric of every finished job, a row per configuration (``strip_chart``).

    Returns:
        The job records (best first) and the Markdown text.
    """
    jobs = collect_jobs(sweep_dir, exclude_keys)
    study = _read_json(sweep_dir / STUDY_FILE) or None
    markdown = to_markdown(jobs, study)
    if fold_groups := folds.fold_groups(jobs, sweep_dir):  # cv=K: one row per configuration
        markdown += "\n".join(folds.markdown_section(fold_groups)) + "\n"
        write_atomic(sweep_dir / "cross_validation.csv", folds.to_csv(fold_groups).encode())
    write_atomic(sweep_dir / "summary.csv", to_csv(jobs).encode())
    write_atomic(sweep_dir / "summary.md", markdown.encode())
    key = ranking_key(jobs)
    rows, shared = configuration_values(jobs, key)
    if sum(len(values) for _, values in rows) >= 2:
        from mnistlab.figures import png, strip_chart  # imports torch: not at every command's start (Hydra's plugins)

        title = f"{key} of each finished job (dots) and each configuration's mean (bars)"
        chart = strip_chart(rows, key, title, f"every job: {' '.join(shared)}" if shared else "")
        write_atomic(sweep_dir / "summary.png", png(chart))
    return jobs, markdown
