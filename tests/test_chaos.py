"""A sweep SIGKILLed at five moments and continued each time ends as an uninterrupted sweep, bit for bit.

The kills come from ``tests/chaos/sitecustomize.py`` (on ``PYTHONPATH`` for the killed launches only):
during a job's start-up, mid-epoch, inside a checkpoint write, between two jobs, during the summary
write. After each kill the same command continues the sweep: finished jobs are kept untouched (their
checkpoints are not rewritten), interrupted jobs resume from their own ``last.ckpt``, the others run.
At the end each job's final metrics and checkpoint weights equal those of a sweep never killed
(CPU, ``trainer.deterministic=true``). The same holds under the joblib launcher with 2 workers, and
after a Ctrl-C (SIGINT), whose last line says how to continue.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, ROOT, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.sweeps.summary import read_metrics

pytestmark = pytest.mark.slow  # a dozen sweep launches, about a minute and a half on 2 cores

CHAOS = Path(__file__).parent / "chaos"
# 300 images: 60 for validation, 240 in 8 batches of 32 a epoch; last.ckpt every 3 steps and at epoch ends.
STEPS_PER_EPOCH = 8
# (CHAOS_KILL, jobs finished when it strikes, the job it strikes and the step of that job's last.ckpt then).
# Each launch after the first continues the one before; a sixth launch then completes the sweep.
KILLS = (
    ("startup:0", 0, 0, None),  # job 0's folder made, nothing saved: it starts again
    ("step:0:4", 0, 0, 3),  # mid-epoch: job 0 resumes from step 3
    ("checkpoint:1:2", 1, 1, 3),  # job 1's step-6 checkpoint in its temp file: the step-3 one is kept
    ("after_job:2", 3, None, None),  # jobs 0-2 finished, job 3 not started
    ("summary:-1", 4, None, None),  # summary.csv written, summary.md not
)
FINAL = ("test/acc", "test/loss", "val/acc_best", "epochs")


def settings(data: Path) -> list[str]:
    """Every job's settings but its model and batches (an Optuna search tunes those)."""
    return [
        f"data.root={data}",
        "data.download=false",
        "data.verify=false",
        "data.val_size=60",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "trainer.accelerator=cpu",
        "callbacks.progress_bar.refresh_rate=0",
    ]


# The grid's settings: a linear model, 8 batches an epoch, last.ckpt every 3 steps, a loss point every 2.
GRID = (
    "model=linear",
    "data.batch_size=32",
    "trainer.log_every_n_steps=2",
    "callbacks.last_checkpoint.every_n_steps=3",
    "seed=1,2,3,4",
)


def sweep(
    sweep_dir: Path,
    data: Path,
    *extra: str,
    kill: str | None = None,
    jobs: tuple[str, ...] = GRID,
    signal_name: str = "KILL",
    base: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """The sweep's command, in a process group of its own (what ``CHAOS_KILL`` ends); the same every time."""
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1"}
    # One thread everywhere: joblib gives each of its 2 workers cpu_count / 2 threads, and a float sum
    # split over another number of threads rounds differently.
    env["OMP_NUM_THREADS"] = "1"
    env.pop("CHAOS_KILL", None)
    if kill is not None:
        env["CHAOS_KILL"], env["CHAOS_SIGNAL"] = kill, signal_name
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CHAOS), env.get("PYTHONPATH"))))
    base = settings(data) if base is None else base
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *base, *jobs, *extra]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    return subprocess.run(
        command, cwd=sweep_dir.parent, env=env, capture_output=True, text=True, timeout=300, start_new_session=True
    )


def job_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {p.parent.parent.name: p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")}


def finished(sweep_dir: Path) -> dict[str, int]:
    """The finished jobs' ``last.ckpt``, by job folder: their modification times, which must never change."""
    times = {}
    for name, job in job_dirs(sweep_dir).items():
        record = job / "job.json"
        if record.is_file() and json.loads(record.read_text())["status"] == "ok":
            times[name] = (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    return times


def assert_equal_to(reference: Path, sweep_dir: Path) -> None:
    """Every job's final metrics and checkpoint weights are the reference sweep's, bit for bit."""
    names = sorted(job_dirs(reference))
    assert sorted(job_dirs(sweep_dir)) == names and len(names) == 4
    for name in names:
        ours, theirs = (json.loads((d / name / "metrics.json").read_text()) for d in (sweep_dir, reference))
        assert {k: ours[k] for k in FINAL} == {k: theirs[k] for k in FINAL}, name
        for ckpt in ("last.ckpt", "best.ckpt"):
            a, b = (torch.load(d / name / "checkpoints" / ckpt, weights_only=True) for d in (sweep_dir, reference))
            assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH or ckpt == "best.ckpt"
            assert a["state_dict"].keys() == b["state_dict"].keys()
            assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), (name, ckpt)
        seed = re.search(r"seed=\d+", name).group()
        print(
            f"  job {name.split('_')[0]} ({seed}): test/acc {ours['test/acc']:.4f}, "
            f"test/loss {ours['test/loss']:.6f}, val/acc_best {ours['val/acc_best']:.4f}, "
            "last.ckpt and best.ckpt weights: equal"
        )
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["job"] for row in rows) == names and {row["status"] for row in rows} == {"ok"}  # each once


def tensorboard_steps(job: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(job), size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_set(tmp_path_factory.mktemp("chaos") / "tiny", n_train=300, n_test=40)


@pytest.fixture(scope="module")
def reference(data: Path) -> Path:
    """The sweep never killed."""
    sweep_dir = data.parent / "reference"
    result = sweep(sweep_dir, data)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def job(sweep_dir: Path, num: int) -> Path:
    return next(path for name, path in job_dirs(sweep_dir).items() if name.startswith(f"{num}_"))


def launch(sweep_dir: Path, data: Path, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
    """One launch of the sweep; the jobs that had finished before it are left untouched by it."""
    kept = finished(sweep_dir)
    result = sweep(sweep_dir, data, *extra, kill=kill)
    if kill is None:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "# Sweep summary: 4 jobs, 4 finished, 0 failed" in result.stdout
    else:
        assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-3000:]
        print(f"kill {kill}: SIGKILL {result.stderr.split('chaos: SIGKILL ')[-1].strip()}")
    # Today's failure: a continued sweep ran the finished jobs again and wrote new checkpoints.
    after = finished(sweep_dir)
    assert {name: after.get(name) for name in kept} == kept, "a finished job was run again"
    kept_lines = [line for line in result.stdout.splitlines() if line.startswith("job ") and " kept: " in line]
    assert len(kept_lines) == len(kept)
    print(f"  launch kept {len(kept)} finished jobs untouched (checkpoint mtimes equal), ran the others")
    return result


def test_a_sweep_killed_at_five_moments_ends_as_if_never_killed(data: Path, reference: Path) -> None:
    sweep_dir = data.parent / "chaos"
    for kill, done, num, step in KILLS:
        launch(sweep_dir, data, kill=kill)
        assert len(finished(sweep_dir)) == done
        if num is not None:
            last = job(sweep_dir, num) / "checkpoints" / "last.ckpt"
            saved = torch.load(last, weights_only=True)["global_step"] if last.exists() else None
            assert saved == step, (kill, saved)
    assert (sweep_dir / "summary.csv").exists() and not (sweep_dir / "summary.md").exists()
    launch(sweep_dir, data)
    assert_equal_to(reference, sweep_dir)
    # Job 0 was killed after step 4 and resumed from step 3: TensorBoard shows each step once.
    steps = tensorboard_steps(job(sweep_dir, 0), "train/loss_step")
    assert steps == sorted(set(steps)) and set(steps) <= set(range(1, 2 * STEPS_PER_EPOCH, 2)), steps
    print(f"  job 0's TensorBoard steps of train/loss_step, each once: {steps}")


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_ctrl_c_on_a_sweep_says_how_to_continue_and_it_ends_as_if_never_stopped(
    data: Path, reference: Path, launcher: str
) -> None:
    """Job 1 mid-epoch. With joblib both workers get the Ctrl-C and are stopped, drawing their progress bars: the
    hint is still the last line (no "leaked semaphore objects" warning after it from Python's resource tracker)."""
    sweep_dir = data.parent / f"ctrl_c_{launcher}"
    extra = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2") if launcher == "joblib" else ()
    bars = [s for s in settings(data) if not s.startswith("callbacks.progress_bar.")]
    stopped = sweep(sweep_dir, data, *extra, kill="step:1:4", signal_name="INT", base=bars)
    # Lightning ends a fit it stopped with 1, which ends a sequential sweep; joblib's wait is stopped: 130.
    status = 1 if launcher == "basic" else 130
    assert stopped.returncode == status and "Traceback" not in stopped.stdout + stopped.stderr, stopped.stderr[-3000:]
    hint = stopped.stderr.strip().splitlines()[-1]
    assert hint == (
        f"interrupted; continue with the same command plus hydra.sweep.dir={sweep_dir} "
        "(finished jobs are kept, interrupted ones resume from their last checkpoint)"
    ), stopped.stderr[-3000:]
    if launcher == "basic":  # joblib runs job 0 beside job 1
        assert len(finished(sweep_dir)) == 1
    launch(sweep_dir, data, *extra)
    assert_equal_to(reference, sweep_dir)


def test_a_joblib_sweep_killed_mid_epoch_ends_as_if_never_killed(data: Path, reference: Path) -> None:
    """2 workers, killed together with job 1 mid-epoch; the continued jobs' MLflow runs go on too."""
    pytest.importorskip("mlflow", reason='the [mlflow] extra is not installed (pip install -e ".[mlflow]")')
    from mlflow import MlflowClient

    sweep_dir, outputs = data.parent / "chaos_joblib", data.parent / "mlflow"
    extra = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=tb_mlflow", f"paths.mlflow_dir={outputs}")
    launch(sweep_dir, data, *extra, kill="step:1:4")  # both workers go, with job 0 wherever it was
    launch(sweep_dir, data, *extra)
    assert_equal_to(reference, sweep_dir)
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    finished_runs = [r for r in runs if r.info.status == "FINISHED"]
    # One finished run per job, which a job killed after its first checkpoint continued; a job killed
    # before it started again in a new run, and its first run ended KILLED. None is left RUNNING.
    assert sorted(r.data.tags["run_dir"] for r in finished_runs) == sorted(str(p) for p in job_dirs(sweep_dir).values())
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    for run in finished_runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
        assert steps == sorted(set(steps)) and set(steps) <= set(range(1, 2 * STEPS_PER_EPOCH, 2)), steps
    killed = len(runs) - len(finished_runs)
    print(f"  MLflow: {len(finished_runs)} FINISHED runs, each logged step once; {killed} KILLED (restarted jobs)")


def test_an_optuna_trial_killed_mid_run_is_marked_failed_and_retried(data: Path) -> None:
    import optuna

    sweep_dir = data.parent / "chaos_optuna"
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1"]
    search += ["hydra.sweeper.grace_period=2"]
    killed = sweep(sweep_dir, data, *search, kill="step:1:2", jobs=())
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    db = f"sqlite:///{sweep_dir}/optuna.db"
    states = [t.state.name for t in optuna.load_study(study_name="mnistlab", storage=db).trials]
    assert states == ["COMPLETE", "RUNNING"], states  # nobody will finish trial 1
    continued = sweep(sweep_dir, data, *search, jobs=())
    assert continued.returncode == 0, continued.stdout[-2000:] + continued.stderr[-3000:]
    trials = optuna.load_study(study_name="mnistlab", storage=db).trials
    print("optuna trials after the kill and the continued sweep:", [(t.number, t.state.name) for t in trials])
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1  # the retry
    assert "# Sweep summary: 4 jobs, 3 finished, 1 retried, 0 failed" in continued.stdout


def test_a_killed_cross_validated_optuna_trial_is_retried_not_told_one_folds_value(data: Path) -> None:
    import optuna

    sweep_dir = data.parent / "chaos_optuna_cv"
    base = [s for s in settings(data) if not s.startswith("data.val_size=")]  # the folds validate
    search = ["hparams_search=optuna", "cv=2", "hydra.sweeper.n_trials=2"]
    search += ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    # Job 1 is trial 0's second fold; job 0, its first fold, has finished and holds a val/acc_best of its own.
    killed = sweep(sweep_dir, data, *search, kill="step:1:2", jobs=(), base=base)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    db = f"sqlite:///{sweep_dir}/optuna.db"
    assert [t.state.name for t in optuna.load_study(study_name="mnistlab", storage=db).trials] == ["RUNNING"]
    continued = sweep(sweep_dir, data, *search, jobs=(), base=base)
    assert continued.returncode == 0, continued.stdout[-2000:] + continued.stderr[-3000:]
    trials = optuna.load_study(study_name="mnistlab", storage=db).trials
    print("optuna cv trials after the kill and the continued sweep:", [(t.number, t.state.name) for t in trials])
    # Before: trial 0 stayed RUNNING (no heartbeat under cv) or was told job 0's value as its 2-fold mean.
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == trials[0].params and trials[1].system_attrs["failed_trial"] == 0
    folds = [read_metrics(job(sweep_dir, n))["val/acc_best"] for n in trials[1].user_attrs["mnistlab_jobs"]]
    assert trials[1].user_attrs["mnistlab_jobs"] == [2, 3] and trials[1].value == pytest.approx(sum(folds) / 2)
    assert json.loads((job(sweep_dir, 1) / "job.json").read_text())["status"] == "retried"
    # The summary counts each fold once: the retry's, not the killed trial's finished fold 0 (job 0) as well.
    with open(sweep_dir / "cross_validation.csv", newline="") as f:
        rows = {row["val/acc_best mean"]: row for row in csv.DictReader(f)}
    assert rows[f"{trials[1].value:.6f}"]["folds"] == rows[f"{trials[1].value:.6f}"]["finished"] == "2"
    assert sorted(p.name for p in (sweep_dir / "ensembles").iterdir()) == ["2", "4"]  # each its first job's number
