"""The columns of a sweep's HParams tab: one record of every hyperparameter that any of its runs has.

TensorBoard's HParams tab takes its columns from one "experiment" summary, and where each run wrote its
own it picks one of them: the columns of that run alone (an ``optimizer=adam,sgd`` sweep lost
``optimizer.momentum`` wherever it picked an adam job). A sweep's jobs and ensembles therefore write
their records without one (``hparams.log_hparams(columns=False)``), and the sweep writes the one
experiment into its own folder when it ends, also interrupted (``hydra_plugins.mnistlab_sweeps.interruptions``):
every key of the runs' ``hparams.yaml``, in the order they first appear, so TensorBoard shows every job under
the same columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.hparams import Scalar, read_hparams_file
from mnistlab.run_folders import EVENT_FILES
from mnistlab.sweeps.summary import read_metrics

# The runs of a sweep that record hyperparameters: the jobs, and the ensembles of a cv=K sweep.
RUNS = ("*", "ensembles/*")


def sweep_columns(sweep_dir: Path, metrics: tuple[str, ...]) -> tuple[dict[str, Scalar], list[str]]:
    """Each hyperparameter of the sweep's runs with its first value (its type names the column's), in order,
    and those of ``metrics`` that any run's ``metrics.json`` holds."""
    columns: dict[str, Scalar] = {}
    logged: set[str] = set()
    for pattern in RUNS:
        for run in sorted(sweep_dir.glob(pattern)):
            # A job that failed before writing them has none: its columns are the others'.
            for key, value in read_hparams_file(run).items():
                columns.setdefault(str(key), value)
            logged |= set(read_metrics(run))
    return columns, [m for m in metrics if m in logged]


def write_columns(sweep_dir: Path, metrics: tuple[str, ...]) -> bool:
    """Writes the sweep's one HParams experiment (``sweep_columns``: its runs' keys and metrics) into ``sweep_dir``.

    A continued sweep writes it again, over its earlier one: TensorBoard keeps the first experiment it reads.

    Returns:
        Whether one was written (a sweep whose runs wrote no record has none).
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    from mnistlab.lightning_private import file_writer

    columns, logged = sweep_columns(sweep_dir, metrics)
    if not columns:
        return False
    for old in sweep_dir.glob(EVENT_FILES):  # written only here: the sweep folder's own TensorBoard run
        old.unlink()
    experiment, _, _ = hparams_summary(columns, dict.fromkeys(logged, 0.0))
    writer: Any = SummaryWriter(str(sweep_dir))
    try:
        file_writer(writer).add_summary(experiment)
    finally:
        writer.close()
    return True
