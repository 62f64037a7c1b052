"""Cross-validation in a sweep (``-m cv=K``): the folds of each configuration as one row, and their ensemble.

The jobs of one configuration differ only in ``data.fold`` and the seed that goes with it. Each
configuration's ensemble (the mean of its fold models' probabilities) is tested once the sweep ends, into
``<sweep>/ensembles/<n>/`` (n: the configuration's first job): the usual report files, ``members.csv``,
``metrics.json``, a TensorBoard run, and ``ensemble.json`` naming the configuration, which the summary reads back.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab.atomic_files import write_json
from mnistlab.config_keys import override_key
from mnistlab.run_folders import EVENT_FILES
from mnistlab.sweep_runs import job_number, last_runs
from mnistlab.sweeps.ranking import best_first, ranking_key

if TYPE_CHECKING:  # the summary imports this module
    from mnistlab.sweeps.summary import JobRecord

FOLD_KEY = "data.fold"
SEED_KEY = "seed"
# cv=K gives fold i the seed S+i (hydra_plugins.mnistlab_sweeps.folds): not part of the configuration.
PER_FOLD = (FOLD_KEY, SEED_KEY)
ENSEMBLES = "ensembles"
ENSEMBLE_FILE = "ensemble.json"


@dataclass
class FoldGroup:
    """The fold jobs of one configuration.

    Attributes:
        overrides: The configuration's overrides, ``data.fold`` left out.
        jobs: Every fold job of it, finished or not, in fold order.
        ensemble: The ensemble's ``metrics.json`` once it has been tested, else {}.
    """

    overrides: list[str]
    jobs: list[JobRecord]
    ensemble: dict[str, float]

    @property
    def finished(self) -> list[JobRecord]:
        return [job for job in self.jobs if job.status == "ok"]

    @property
    def planned(self) -> int:
        """How many folds the configuration has: K of its ``cv=K`` or ``data.folds=K``, else its jobs.

        A pruned Optuna trial's later folds never ran, so no job folder says they were due.
        """
        ks = [o.split("=", 1)[1] for o in self.overrides if override_key(o) in ("cv", "data.folds")]
        return max([len(self.jobs), *(int(k) for k in ks if k.isdigit())])

    def stat(self, key: str) -> tuple[float, float | None] | None:
        """Mean and sample standard deviation of ``key`` over the finished folds (no std for one fold: it has none)."""
        values = [v for job in self.finished if (v := job.get(key)) is not None]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _fold(job: JobRecord) -> int:
    return next(int(o.split("=", 1)[1]) for o in job.overrides if override_key(o) == FOLD_KEY)


def _one_per_fold(jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """Each fold's job, in fold order (``mnistlab.sweep_runs.last_runs``)."""
    kept = last_runs(jobs, _fold)
    return [kept[fold] for fold in sorted(kept)]


def stats(groups: Sequence[FoldGroup]) -> tuple[str, str]:
    """What the folds report: their validation score (``val/acc_best`` or ``val/loss_best``, as the sweep's
    ranking reads it) and ``test/acc``."""
    key = ranking_key([job for group in groups for job in group.jobs])
    return ("val/acc_best" if key == "test/acc" else key), "test/acc"


def _by_seed(configuration: tuple[str, ...], jobs: Sequence[JobRecord]) -> dict[tuple[str, ...], list[JobRecord]]:
    """One configuration's fold jobs, split by seed where a fold ran with several (``-m data.fold=0,1 seed=1,2``).

    Under ``cv=K`` a fold's seed goes with its fold (S+i), so the seed is no setting of the configuration.
    """
    seeds: dict[int, set[str]] = {}
    for job in jobs:
        seeds.setdefault(_fold(job), set()).add(_seed(job))
    if all(len(s) == 1 for s in seeds.values()):
        return {configuration: list(jobs)}
    split: dict[tuple[str, ...], list[JobRecord]] = {}
    for job in jobs:
        split.setdefault(tuple(sorted({*configuration, _seed(job)} - {""})), []).append(job)
    return split


def _seed(job: JobRecord) -> str:
    return next((o for o in job.overrides if override_key(o) == SEED_KEY), "")


def read_ensembles(sweep_dir: Path) -> dict[tuple[str, ...], dict[str, float]]:
    """The tested ensembles of a sweep: their configuration's overrides -> their ``metrics.json``."""
    found = {}
    for record in sweep_dir.glob(f"{ENSEMBLES}/*/{ENSEMBLE_FILE}"):
        try:
            overrides = json.loads(record.read_text())["overrides"]
            metrics = json.loads((record.parent / "metrics.json").read_text())
        except (OSError, ValueError, KeyError):
            continue
        found[tuple(sorted(overrides))] = metrics
    return found


def fold_groups(jobs: Sequence[JobRecord], sweep_dir: Path | None = None) -> list[FoldGroup]:
    """The jobs with a ``data.fold`` override, one group per configuration, best mean validation score first.

    The test set never ranks them: a group without validation accuracy goes last.
    """
    groups: dict[tuple[str, ...], list[JobRecord]] = {}
    for job in jobs:
        if any(override_key(o) == FOLD_KEY for o in job.overrides):
            configuration = tuple(sorted(o for o in job.overrides if override_key(o) not in PER_FOLD))
            groups.setdefault(configuration, []).append(job)
    groups = {k: v for configuration, members in groups.items() for k, v in _by_seed(configuration, members).items()}
    ensembles = read_ensembles(sweep_dir) if sweep_dir is not None else {}
    rows = [FoldGroup(list(k), _one_per_fold(v), ensembles.get(k, {})) for k, v in groups.items()]
    key = stats(rows)[0]
    return sorted(rows, key=lambda g: best_first(s[0] if (s := g.stat(key)) else None, key))


def markdown_section(groups: Sequence[FoldGroup]) -> list[str]:
    """The summary's cross-validation table: one row per configuration."""
    if not groups:
        return []
    lines = ["", "## Cross-validation: mean ± std over folds", ""]
    keys = stats(groups)
    score = "accuracy" if keys[0] == "val/acc_best" else "loss"
    lines += [f"Ranked by the mean validation {score} over the folds; test/acc is only reported.", ""]
    lines += [f"| overrides | folds | {keys[0]} | test/acc | ensemble test/acc |", "|---|---|---|---|---|"]
    for group in groups:
        cells = [_mean_std(group.stat(k)) for k in keys]
        ensemble = group.ensemble.get("test/acc")
        done, total = len(group.finished), group.planned
        folds = str(total) if done == total else f"{done} of {total}"
        overrides = " ".join(group.overrides).replace("|", "\\|") or " "
        cells.append("" if ensemble is None else f"{ensemble:.4f}")
        lines.append(f"| {overrides} | {folds} | {' | '.join(cells)} |")
    return lines


def _mean_std(stat: tuple[float, float | None] | None) -> str:
    """A summary cell: ``mean ± std``, the value alone for one fold, empty for none."""
    if stat is None:
        return ""
    return f"{stat[0]:.4f}" if stat[1] is None else f"{stat[0]:.4f} ± {stat[1]:.4f}"


def to_csv(groups: Sequence[FoldGroup]) -> str:
    """The cross-validation table as CSV (``cross_validation.csv``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = stats(groups)
    writer.writerow(
        ["overrides", "folds", "finished", *(f"{k} {s}" for k in keys for s in ("mean", "std")), "ensemble test/acc"]
    )
    for group in groups:
        cells = []
        for key in keys:
            stat = group.stat(key)
            cells += ["" if v is None else f"{v:.6f}" for v in stat] if stat else ["", ""]
        ensemble = group.ensemble.get("test/acc")
        row = [" ".join(group.overrides), group.planned, len(group.finished), *cells]
        writer.writerow([*row, "" if ensemble is None else f"{ensemble:.6f}"])
    return out.getvalue()


def evaluate_ensembles(
    sweep_dir: Path, jobs: Sequence[JobRecord], accelerator: str | None = "auto"
) -> list[tuple[FoldGroup, Path]]:
    """Tests each configuration's ensemble of its finished folds (two or more) into ``<sweep>/ensembles/<n>/``.

    Returns:
        Each configuration with two or more finished folds, its ensemble's metrics read in, and its report folder.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from mnistlab.checkpoint_paths import find_checkpoint
    from mnistlab.checkpoints import read_checkpoint
    from mnistlab.evaluation.callbacks import TestReport
    from mnistlab.evaluation.evaluate import evaluate
    from mnistlab.evaluation.predictors import quiet

    written = []
    for group in fold_groups(jobs):
        if len(group.finished) < 2:
            continue
        # Named by the configuration's first job, not its rank, which a continued sweep may change.
        out = sweep_dir / ENSEMBLES / str(min(job_number(job.name) for job in group.jobs))
        for old in out.glob(EVENT_FILES):  # a continued sweep tests it again: one TensorBoard run
            old.unlink()
        checkpoints = [find_checkpoint(sweep_dir / job.name, announce=False) for job in group.finished]
        with quiet("lightning.pytorch"):  # its "GPU available" notes, once per ensemble
            trainer = pl.Trainer(
                accelerator=accelerator or "auto",
                devices=1,
                logger=TensorBoardLogger(save_dir=str(out), name="", version="", default_hp_metric=False),
                callbacks=[TestReport(str(out))],
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            # The folds' own data folder, not the first one evaluate.py would search: the test set they were tested on.
            saved = read_checkpoint(checkpoints[0]).get("datamodule_hyper_parameters") or {}
            # Columns: the sweep's (mnistlab.sweeps.hparams_columns).
            evaluation = evaluate(checkpoints, trainer, {"root": saved.get("root")}, columns=False)
        write_json(
            out / ENSEMBLE_FILE,
            {
                "overrides": group.overrides,
                # Relative to the sweep folder, so that the folder can move (mnistlab.checkpoints reads them back).
                "members": [str(p.relative_to(sweep_dir)) for p in checkpoints],
                "test/acc": evaluation.result.accuracy,
                "members_test/acc": [acc for _, acc in evaluation.members],
            },
        )
        group.ensemble = evaluation.result.summary()
        written.append((group, out))
    return written


def parent_metrics(group: FoldGroup) -> dict[str, float]:
    """What a cross-validation's parent run records: the ensemble's test metrics and the folds' mean and std."""
    metrics = {f"ensemble/{k}": v for k, v in group.ensemble.items()}
    for key in stats([group]):
        if stat := group.stat(key):
            metrics[f"folds/{key}_mean"] = stat[0]
            if stat[1] is not None:
                metrics[f"folds/{key}_std"] = stat[1]
    return metrics
