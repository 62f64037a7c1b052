"""MLflow runs seen from outside their job: a finished job's run ended, the folds of a cross-validation nested.

The sweep's Hydra callbacks (``hydra_plugins.mnistlab_sweeps``) call these after a job, whichever
launcher ran it; the run itself was made in the job by ``mnistlab.mlflow_logger.MLflowLogger``,
which saved its id in the run folder's ``mlflow_run.json``. ``mlflow`` is imported inside the functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnistlab.atomic_files import write_json
from mnistlab.mlflow_logger import RUN_FILE, record_error, with_retry

if TYPE_CHECKING:  # mlflow is the [mlflow] extra
    from mlflow import MlflowClient

# The run folder's report (written by mnistlab.evaluation.TestReport and fit_and_test), uploaded as artifacts.
REPORT_FILES = ("confusion_matrix.png", "confusion_matrix.csv", "per_class.csv", "metrics.json")
# In an ensemble's report folder: the parent run that nest_runs made for it.
PARENT_FILE = "mlflow_parent.json"
# The composed config as Hydra saved it; uploaded under config/.
CONFIG_FILES = (".hydra/config.yaml", ".hydra/overrides.yaml")


def finish_run(run_dir: Path, error: BaseException | None = None, pruned: bool = False) -> None:
    """Ends the run saved in ``run_dir``: report files and config as artifacts, checkpoint path, final state.

    Checkpoints stay on disk; their path is a tag. A failed job's run ends ``FAILED`` with
    its error, a pruned Optuna trial's and one stopped by a Ctrl-C or a SIGTERM ``KILLED``.
    """
    from mlflow import MlflowClient

    saved = json.loads((run_dir / RUN_FILE).read_text())
    client, run_id = MlflowClient(saved["tracking_uri"]), saved["run_id"]
    for name in REPORT_FILES:
        if (run_dir / name).exists():
            with_retry(lambda name=name: client.log_artifact(run_id, str(run_dir / name)))
    for name in CONFIG_FILES:
        if (run_dir / name).exists():
            with_retry(lambda name=name: client.log_artifact(run_id, str(run_dir / name), "config"))
    checkpoints = run_dir / "checkpoints"
    for name in ("best.ckpt", "last.ckpt"):
        if (checkpoints / name).exists():
            with_retry(lambda name=name: client.set_tag(run_id, "checkpoint", str((checkpoints / name).resolve())))
            break
    if error is not None:
        record_error(client, run_id, error)
    stopped = pruned or isinstance(error, KeyboardInterrupt | SIGTERMException)  # stopped, not failed
    status = "FINISHED" if error is None else "KILLED" if stopped else "FAILED"
    with_retry(lambda: client.set_terminated(run_id, status))


def nest_runs(run_dirs: Sequence[Path], name: str, metrics: Mapping[str, float], report_dir: Path) -> str | None:
    """A parent run over the MLflow runs saved in ``run_dirs`` (the folds of a cross-validation), in their experiment.

    The children are nested by MLflow's ``mlflow.parentRunId`` tag, set after they ended, so this works
    whichever launcher ran them. The parent holds ``metrics``, the params all its children share (the
    configuration: not ``data.fold`` nor ``seed``, so that the UI compares configurations by them) and the
    report files of ``report_dir`` (plus its ``members.csv``).

    Returns:
        The parent's run id; None when no folder holds an MLflow run.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    saved = [json.loads((d / RUN_FILE).read_text()) for d in run_dirs if (d / RUN_FILE).is_file()]
    if not saved:
        return None
    client = MlflowClient(saved[0]["tracking_uri"])
    tags = {"cv.folds": str(len(run_dirs)), "report_dir": str(report_dir.resolve())}
    # A continued sweep tests its ensembles again: their parent runs are those of the first launch, not new ones.
    parent = _earlier_parent(client, report_dir / PARENT_FILE, saved[0])
    if parent is None:
        parent = with_retry(lambda: client.create_run(saved[0]["experiment_id"], run_name=name, tags=tags)).info.run_id
        write_json(report_dir / PARENT_FILE, {"tracking_uri": saved[0]["tracking_uri"], "run_id": parent})
    for child in saved:
        with_retry(lambda child=child: client.set_tag(child["run_id"], "mlflow.parentRunId", parent))
    now = int(time.time() * 1000)
    points = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    children = [with_retry(lambda child=child: client.get_run(child["run_id"])).data.params for child in saved]
    shared = [Param(k, v) for k, v in children[0].items() if all(params.get(k) == v for params in children[1:])]
    with_retry(lambda: client.log_batch(parent, metrics=points, params=shared))
    for file in (*REPORT_FILES, "members.csv"):
        if (report_dir / file).exists():
            with_retry(lambda file=file: client.log_artifact(parent, str(report_dir / file)))
    with_retry(lambda: client.set_terminated(parent, "FINISHED"))
    return parent


def _earlier_parent(client: MlflowClient, record: Path, child: Mapping[str, str]) -> str | None:
    """The parent run an earlier launch recorded in ``record``, if it is still in the children's experiment."""
    try:
        earlier = json.loads(record.read_text())
        if earlier["tracking_uri"] != child["tracking_uri"]:
            return None
        run = client.get_run(earlier["run_id"])
    except Exception:  # no record, a damaged one, or a run deleted since: a new parent
        return None
    return run.info.run_id if run.info.experiment_id == child["experiment_id"] else None
