"""scripts/evaluate.py and the training run's own test report, on a real notebook_hidden checkpoint."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import TrainedRun, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
REPORT_FILES = ("confusion_matrix.png", "confusion_matrix.csv", "per_class.csv", "metrics.json")


def printed_confusion_matrix(stdout: str) -> list[list[int]]:
    lines = stdout.splitlines()
    start = lines.index("confusion matrix (rows actual, columns predicted)") + 2  # skip the header row
    return [[int(v) for v in line.split()[1:]] for line in lines[start : start + 10]]


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open()))


def test_evaluate_reproduces_the_training_test(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run_script("evaluate.py", f"ckpt_path={notebook_hidden_run.checkpoint}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    matrix = printed_confusion_matrix(result.stdout)
    assert [sum(row) for row in matrix] == TEST_COUNTS
    trained = json.loads((notebook_hidden_run.dir / "metrics.json").read_text())
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["test/acc"] == trained["test/acc"]
    assert f"accuracy {trained['test/acc']:.4f}" in result.stdout
    assert sum(matrix[i][i] for i in range(10)) == round(trained["test/acc"] * 10_000)
    for name in ("precision", "recall", "f1"):
        assert evaluated[f"test/{name}_macro"] == trained[f"test/{name}_macro"]
    per_class = read_csv(out / "per_class.csv")
    assert per_class[0] == ["class", "precision", "recall", "f1", "support"]
    assert [int(r[4]) for r in per_class[1:11]] == TEST_COUNTS and per_class[11][0] == "macro avg"
    # Recall of a digit is its diagonal count over its row: the table and the matrix agree.
    assert all(abs(float(per_class[i + 1][2]) - matrix[i][i] / TEST_COUNTS[i]) < 1e-4 for i in range(10))
    assert [[int(v) for v in row[1:]] for row in read_csv(out / "confusion_matrix.csv")[1:]] == matrix
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tags = event_tags(out)
    assert "test/confusion_matrix" in tags["images"] and "test/misclassified" in tags["images"]


def event_tags(folder: Path) -> dict[str, list[str]]:
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return events.Tags()


def test_training_run_writes_the_same_report(notebook_hidden_run: TrainedRun) -> None:
    for name in REPORT_FILES:
        assert (notebook_hidden_run.dir / name).is_file(), name
    metrics = json.loads((notebook_hidden_run.dir / "metrics.json").read_text())
    assert {"test/acc", "test/f1_macro", "epochs", "fit_seconds"} <= set(metrics)
    rows = read_csv(notebook_hidden_run.dir / "confusion_matrix.csv")[1:]
    assert [sum(int(v) for v in row[1:]) for row in rows] == TEST_COUNTS
    tags = event_tags(notebook_hidden_run.dir)
    assert {"train/samples", "test/misclassified", "test/confusion_matrix"} <= set(tags["images"])
    assert any(tag.startswith("test/report") for tag in tags["tensors"])  # the tables as text


def test_evaluate_under_fast_dev_run_is_a_smoke_test_that_writes_no_report(
    notebook_hidden_run: TrainedRun, tmp_path: Path
) -> None:
    # Before: the report of one batch (1,000 images), metrics.json written and "written to" printed.
    run_dir = tmp_path / "eval"
    smoke = run_script("evaluate.py", f"ckpt_path={notebook_hidden_run.checkpoint}", "trainer.fast_dev_run=true",
                       f"hydra.run.dir={run_dir}")  # fmt: skip
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert smoke.stdout.strip().splitlines()[-1].endswith("on a few batches, a smoke test: nothing written")
    assert "written to" not in smoke.stdout
    assert not run_dir.exists()  # not even Hydra's records and evaluate.log, which were left


def test_evaluate_into_a_runs_folder_is_refused_and_the_run_still_resumes(
    notebook_hidden_run: TrainedRun, tmp_path: Path
) -> None:
    # Before: the report replaced the run's metrics.json and .hydra/config.yaml (evaluate's), and a resume of
    # the run then stopped with a traceback (omegaconf's "Missing key seed").
    run = tmp_path / "run"
    shutil.copytree(notebook_hidden_run.dir, run)
    records = {p: p.read_bytes() for p in (run / "metrics.json", run / ".hydra" / "config.yaml")}
    into = run_script("evaluate.py", f"ckpt_path={run}", f"hydra.run.dir={run}")
    assert into.returncode == 2 and "Traceback" not in into.stderr
    assert into.stderr.strip().splitlines()[-1] == (
        f"error: hydra.run.dir={run} holds a run, a sweep or a report (checkpoints, metrics.json), which this "
        "report would overwrite: leave hydra.run.dir out (a report goes into <run>/eval/<date>_<time>/) or give a "
        "new folder"
    )
    assert all(p.read_bytes() == data for p, data in records.items())
    # The scripts that write no records (their run.dir is ".") still run from inside a run's folder.
    predicted = run_script("predict.py", "ckpt_path=.", "index=998", cwd=run)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.strip().splitlines()[-1].startswith("prediction 8 ")
    # A folder whose record another script wrote is refused as a run to resume, in one line.
    evaluated = run_script("evaluate.py", f"ckpt_path={run}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    shutil.copy(tmp_path / "eval" / ".hydra" / "config.yaml", run / ".hydra" / "config.yaml")
    resumed = run_script("train.py", f"resume={run}", "trainer.max_epochs=6")
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"error: resume={run}: its .hydra/config.yaml is not a training run's (another script's)"
    )


def test_evaluate_errors_are_one_line(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    missing = run_script("evaluate.py", f"ckpt_path={tmp_path}/nope.ckpt", f"hydra.run.dir={tmp_path}/a")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == f"error: checkpoint not found: {tmp_path}/nope.ckpt"
    # data.* overrides replace the checkpoint's saved data settings.
    moved = run_script(
        "evaluate.py",
        f"ckpt_path={notebook_hidden_run.checkpoint}",
        f"data.root={tmp_path}/elsewhere",
        "data.download=false",
        f"hydra.run.dir={tmp_path}/b",
    )
    assert moved.returncode == 2 and "Traceback" not in moved.stderr
    assert f"error: mnist data not found in {tmp_path}/elsewhere (data.download=false)" in moved.stderr.splitlines()
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "b").exists()  # nothing created, no run folder
