"""logger=mlflow: sweeps, parallel jobs, failures and resumed runs in one SQLite store, read by a real MLflow server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, ROOT, kill_at_first_checkpoint, run_script, signal_at_first_checkpoint

pytest.importorskip("mlflow", reason='the [mlflow] extra is not installed (pip install -e ".[mlflow]")')

# 100 batches (optimizer steps) per epoch. Lightning logs batch b (0-based, counted over the run) at step b:
# val/* and the epoch's train/loss at each epoch's last batch, 99, 199, ...; train/loss_step at 49, 99, ...
STEPS_PER_EPOCH = 100
QUICK = ("logger=mlflow", "trainer.limit_train_batches=100", "callbacks.progress_bar.refresh_rate=0")
Api = Callable[..., dict]


def sweep(tmp_path: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    """A ``-m`` sweep into ``tmp_path/name`` that logs to ``tmp_path/outputs/mlflow.db``."""
    store = f"paths.mlflow_dir={tmp_path / 'outputs'}"
    return run_script("train.py", "-m", f"hydra.sweep.dir={tmp_path / name}", store, *QUICK, *overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(database: Path) -> Iterator[Api]:
    """A real ``mlflow server`` on 127.0.0.1 against ``database``; yields a REST caller, stops the server."""
    port = free_port()
    cmd = [Path(sys.executable).with_name("mlflow"), "server", "--backend-store-uri", f"sqlite:///{database}"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--artifacts-destination", str(database.parent / "served-artifacts")]
    # No background job runners (they start seven processes); the REST API needs none.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def api(endpoint: str, body: dict | None = None, **query: str) -> dict:
        url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    api.base = base  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def local_runs(database: Path) -> list:
    """(experiment name, run) for every run in the store, read with MLflow's own client."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{database}")
    return [(e.name, r) for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def history(database: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(f"sqlite:///{database}").get_metric_history(run_id, key)]


@pytest.mark.slow
def test_sweep_is_one_experiment_that_an_mlflow_server_serves(tmp_path: Path) -> None:
    result = sweep(tmp_path, "sweep", "trainer.max_epochs=2", "model.hidden_units=16,32")
    assert result.returncode == 0, result.stderr[-3000:]

    with mlflow_server(tmp_path / "outputs" / "mlflow.db") as api:
        experiments = api("experiments/search", {"max_results": 10})["experiments"]
        experiments = [e for e in experiments if e["name"] != "Default"]  # MLflow's own, empty
        assert [e["name"] for e in experiments] == [str(tmp_path / "sweep")]
        runs = api("runs/search", {"experiment_ids": [experiments[0]["experiment_id"]]})["runs"]
        assert sorted(r["info"]["status"] for r in runs) == ["FINISHED", "FINISHED"]
        for run in runs:
            run_id, tags = run["info"]["run_id"], {t["key"]: t["value"] for t in run["data"]["tags"]}
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            run_dir = Path(tags["run_dir"])
            assert run_dir.parent == tmp_path / "sweep"
            assert params["optimizer.lr"] == "0.001" and len(params) <= 25
            assert f"model.hidden_units={params['model.hidden_units']}" in run["info"]["run_name"]  # the swept key
            assert tags["sweep.job_num"] in ("0", "1") and "model.hidden_units=" in tags["hydra.overrides"]
            assert len(tags["mlflow.source.git.commit"]) == 40
            assert tags["checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")

            val_acc = api("metrics/get-history", run_id=run_id, metric_key="val/acc")["metrics"]
            assert [m["step"] for m in val_acc] == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1]  # one per epoch
            metrics = json.loads((run_dir / "metrics.json").read_text())
            test_acc = api("metrics/get-history", run_id=run_id, metric_key="test/acc")["metrics"]
            assert [m["value"] for m in test_acc] == [pytest.approx(metrics["test/acc"], abs=1e-7)]

            files = {f["path"] for f in api("artifacts/list", run_id=run_id)["files"]}
            assert {"confusion_matrix.png", "confusion_matrix.csv", "per_class.csv", "metrics.json"} <= files
            assert {f["path"] for f in api("artifacts/list", run_id=run_id, path="config")["files"]} == {
                "config/config.yaml",
                "config/overrides.yaml",
            }

        # The same logger on the server instead of the file (logger.mlflow.tracking_uri=http://...).
        from mnistlab.mlflow_logger import MLflowLogger
        from mnistlab.mlflow_runs import finish_run

        run_dir = tmp_path / "via_server"
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text('{"test/acc": 0.5}')
        logger = MLflowLogger(tracking_uri=api.base, run_dir=str(run_dir), experiment_name="via_server")
        logger.log_hyperparams({"optimizer.lr": 0.01})
        logger.log_metrics({"val/acc": 0.25}, step=7)
        logger.finalize("success")
        finish_run(run_dir)
        run = api("runs/get", run_id=logger.run_id)["run"]
        assert run["info"]["status"] == "FINISHED"
        assert run["data"]["params"] == [{"key": "optimizer.lr", "value": "0.01"}]
        assert [(m["step"], m["value"]) for m in run["data"]["metrics"]] == [(7, 0.25)]
        assert [f["path"] for f in api("artifacts/list", run_id=logger.run_id)["files"]] == ["metrics.json"]


@pytest.mark.slow
def test_parallel_jobs_share_the_store_and_failed_jobs_are_recorded(tmp_path: Path) -> None:
    # Two jobs train at once; of the two others, one stops before it builds its logger
    # (lr=-1 is refused) and one diverges inside the fit (lr=1e30: NaN loss).
    overrides = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.max_epochs=1")
    result = sweep(tmp_path, "parallel", *overrides, "optimizer.lr=0.001,0.002,-1,1e30")
    assert result.returncode == 1, result.stderr[-3000:]  # the sweep reports its failed jobs
    assert "database is locked" not in result.stdout + result.stderr

    database = tmp_path / "outputs" / "mlflow.db"
    runs = {r.data.params["optimizer.lr"]: r for name, r in local_runs(database) if name == str(tmp_path / "parallel")}
    assert sorted(runs) == ["-1", "0.001", "0.002", "1e+30"]
    for lr in ("0.001", "0.002"):
        run = runs[lr]
        assert run.info.status == "FINISHED"
        metrics = json.loads((Path(run.data.tags["run_dir"]) / "metrics.json").read_text())
        # Every point of the run, each once, at its optimizer step.
        assert [s for s, _ in history(database, run.info.run_id, "train/loss_step")] == [49, 99]
        # Lightning logs epoch-end metrics at the epoch's last step, and testing after the fit at the next.
        for key in ("train/loss", "train/acc", "val/acc", "val/loss"):
            assert [s for s, _ in history(database, run.info.run_id, key)] == [STEPS_PER_EPOCH - 1], key
        for key in (k for k in metrics if k.startswith("test/")):
            assert [s for s, _ in history(database, run.info.run_id, key)] == [STEPS_PER_EPOCH], key
        assert history(database, run.info.run_id, "test/acc")[0][1] == pytest.approx(metrics["test/acc"], abs=1e-7)
    refused, diverged = runs["-1"], runs["1e+30"]
    assert refused.info.status == diverged.info.status == "FAILED"
    assert refused.data.tags["error"] == "ConfigError: optimizer.lr=-1 is out of range: must be a number > 0"
    assert diverged.data.tags["error"].startswith("NonFiniteLossError: train/loss_step is nan")
    assert "Traceback" in diverged.data.tags["mlflow.note.content"]
    log = (Path(diverged.data.tags["run_dir"]) / "train.log").read_text()
    assert "Error executing job" not in log  # recording the failure in MLflow adds no line of Hydra's


@pytest.mark.slow
def test_runs_started_together_on_a_new_store_both_record(tmp_path: Path) -> None:
    # A single run and a sweep launched at once on a store that does not exist yet: both create its
    # tables unless one waits (MLflow's migration then fails one of them; seen in the docs test).
    outputs = tmp_path / "outputs"
    common = (f"paths.mlflow_dir={outputs}", *QUICK, "trainer.max_epochs=1")
    with ThreadPoolExecutor(max_workers=2) as pool:
        single = pool.submit(run_script, "train.py", f"hydra.run.dir={tmp_path / 'single'}", *common, cwd=tmp_path)
        swept = pool.submit(
            run_script, "train.py", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *common, "model.hidden_units=32,64"
        )
        results = [single.result(), swept.result()]
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = [run for name, run in local_runs(outputs / "mlflow.db") if name != "Default"]
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    # The single run's config names ${hydra:sweep.dir}, which made multirun/<date>/<time>: gone at its exit.
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_killed_run_resumes_the_same_mlflow_run(tmp_path: Path) -> None:
    run_dir, outputs = tmp_path / "run", tmp_path / "outputs"
    last = run_dir / "checkpoints" / "last.ckpt"
    # 200 batches per epoch, 2 epochs; last.ckpt first at step 100, mid-epoch 0.
    args = [f"hydra.run.dir={run_dir}", f"paths.mlflow_dir={outputs}", *QUICK, "trainer.limit_train_batches=200"]
    args += ["trainer.max_epochs=2", "callbacks.last_checkpoint.every_n_steps=100"]
    kill_at_first_checkpoint(args, last)
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < 200
    [killed] = [run for name, run in local_runs(outputs / "mlflow.db") if name != "Default"]
    assert killed.info.status == "RUNNING"

    result = run_script("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [run for name, run in local_runs(outputs / "mlflow.db") if name != "Default"]
    assert [r.info.run_id for r in runs] == [killed.info.run_id] and runs[0].info.status == "FINISHED"
    database, run_id = outputs / "mlflow.db", killed.info.run_id
    for key in ("val/acc", "train/loss"):
        assert [s for s, _ in history(database, run_id, key)] == [199, 399], key
    # Each logged batch once: nothing twice across the restart; at most the point of the checkpoint's last
    # batch is lost (Lightning logs it after the checkpoint callback that the kill interrupted).
    steps = [s for s, _ in history(database, run_id, "train/loss_step")]
    assert steps == sorted(set(steps)) and set(range(49, 400, 50)) - set(steps) <= {killed_at - 1}, steps
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert history(database, run_id, "test/acc") == [(400, pytest.approx(metrics["test/acc"], abs=1e-7))]


def test_without_the_extra_logger_mlflow_says_what_to_install(tmp_path: Path) -> None:
    # A Python that cannot import mlflow (a None entry in sys.modules blocks the import).
    code = (
        "import sys, runpy; sys.modules['mlflow'] = None; sys.argv = sys.argv[1:];"
        " runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR)}
    args = [str(ROOT / "scripts" / "train.py"), "logger=mlflow", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        'error: logger=mlflow needs MLflow, which is not installed: pip install -e ".[mlflow]"'
    )


def test_a_store_mlflow_refuses_is_one_line(tmp_path: Path) -> None:
    """Before: Hydra's "Error in call to target 'mnistlab.mlflow_logger.MLflowLogger'" and a traceback, e.g. for a
    file:// store, which MLflow 3.17 refuses ("maintenance mode"); an unknown scheme is refused by every MLflow."""
    result = run_script("train.py", "logger=mlflow", "logger.mlflow.tracking_uri=nosuch://x",
                        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: logger.mlflow.tracking_uri=nosuch://x: MLflow refuses this store ("
    ) and last.endswith(
        "); leave tracking_uri out for the local SQLite store, or give one: sqlite:///<folder>/mlflow.db"
    )
    assert "MissingMandatoryValue" not in result.stderr  # the sweep callback's warning in a single run, before
    assert list(tmp_path.iterdir()) == []


def test_a_continued_cross_validation_keeps_its_one_parent_run(tmp_path: Path) -> None:
    """The same cv=K command again (continued, or all kept) tests its ensembles again. Before: each launch made
    another parent run of the same name, the earlier one left without its folds."""
    from mlflow import MlflowClient

    from mnistlab.mlflow_runs import nest_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sweep")
    folds = []
    for fold in range(2):
        run = client.create_run(experiment, run_name=f"fold {fold}").info.run_id
        folder = tmp_path / f"{fold}_fold"
        folder.mkdir()
        record = {"tracking_uri": uri, "run_id": run, "experiment_id": experiment}
        (folder / "mlflow_run.json").write_text(json.dumps(record))
        folds.append(folder)
    report = tmp_path / "ensembles" / "0"
    report.mkdir(parents=True)
    first = nest_runs(folds, "cv cv=2", {"ensemble/test/acc": 0.9}, report)
    again = nest_runs(folds, "cv cv=2", {"ensemble/test/acc": 0.9}, report)
    assert again == first
    parents = [r for r in client.search_runs([experiment]) if r.info.run_name == "cv cv=2"]
    assert [r.info.run_id for r in parents] == [first]
    children = {
        r.data.tags.get("mlflow.parentRunId") for r in client.search_runs([experiment]) if r.info.run_id != first
    }
    assert children == {first}


def test_a_run_resumed_after_a_ctrl_c_keeps_no_error_of_the_stopped_launch(tmp_path: Path) -> None:
    """Before: the resumed run ended FINISHED with the Ctrl-C's ``error`` tag ("KeyboardInterrupt: ") and its
    traceback as the description, which MLflow's UI shows as the run's error."""
    run_dir, outputs = tmp_path / "run", tmp_path / "outputs"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [f"hydra.run.dir={run_dir}", f"paths.mlflow_dir={outputs}", *QUICK, "trainer.max_epochs=200"]
    code, stderr = signal_at_first_checkpoint(args, last, signal.SIGINT, cwd=tmp_path)
    assert stderr and code == 1
    [stopped] = [run for name, run in local_runs(outputs / "mlflow.db") if name != "Default"]
    assert stopped.data.tags["error"].startswith("KeyboardInterrupt")  # the stopped launch's, while it is stopped
    assert stopped.info.status == "KILLED"  # before: FAILED, as if the run had failed

    done = torch.load(last, weights_only=True)["epoch"] + 1
    result = run_script("train.py", f"resume={run_dir}", f"trainer.max_epochs={done + 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    [resumed] = [run for name, run in local_runs(outputs / "mlflow.db") if name != "Default"]
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    assert "error" not in resumed.data.tags and "mlflow.note.content" not in resumed.data.tags
