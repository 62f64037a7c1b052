"""Lightning DDP under Hydra on CPU (gloo, 2 processes), real MNIST, and bf16 mixed precision."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import DATA_DIR, ROOT, TrainedRun, compose_train, run_script, write_idx_set
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.checkpoints import load_system
from mnistlab.composition import compose
from mnistlab.data import MNISTDataModule
from mnistlab.figures import image_grid

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

FAST = ("trainer.max_epochs=1", "trainer.limit_train_batches=100", "callbacks.progress_bar.refresh_rate=0")
DDP = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


def confusion_matrix(run_dir: Path) -> list[list[int]]:
    with open(run_dir / "confusion_matrix.csv", newline="") as f:
        return [[int(c) for c in row[1:]] for row in list(csv.reader(f))[1:]]  # rows actual, columns predicted


def single_process_test(ckpt: Path, mnist_dir: Path) -> dict[str, float]:
    system, _ = load_system(ckpt)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    return trainer.test(system, datamodule=MNISTDataModule(root=str(mnist_dir)), verbose=False)[0]


def test_ddp_two_cpu_processes_make_one_run_that_counts_every_sample_once(tmp_path: Path, mnist_dir: Path) -> None:
    run_dir = tmp_path / "run"
    # A whole epoch, so that the schedule's length comes from the real per-rank step count.
    one_epoch = ("trainer.max_epochs=1", "data.batch_size=256", "scheduler=one_cycle", *FAST[2:])
    result = run_script("train.py", *DDP, "model=linear", *one_epoch, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout  # really two processes
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no folder per process, no outputs/
    assert len(list(run_dir.glob("events.out.tfevents.*"))) >= 1 and not list(run_dir.glob("version_*"))
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran in this folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    confmat = confusion_matrix(run_dir)
    assert sum(map(sum, confmat)) == 10_000
    assert sum(confmat[i][i] for i in range(10)) / 10_000 == pytest.approx(metrics["test/acc"], abs=1e-6)
    single = single_process_test(run_dir / "checkpoints" / "best.ckpt", mnist_dir)
    assert single["test/acc"] == metrics["test/acc"]
    assert single["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    # Each rank took half the 55k split: 27,500 / 256 -> 108 optimizer steps, and the one-cycle
    # schedule was sized for exactly those, so it ended annealed (not mid-way, as one sized for 215).
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (sched,) = last["lr_schedulers"]
    assert last["global_step"] == sched["total_steps"] == sched["last_epoch"] == 108
    assert sched["_last_lr"][0] < 1e-6


def test_torchrun_ranks_run_the_command_and_its_checks(tmp_path: Path) -> None:
    """torchrun (docs/usage.md) gives every rank LOCAL_RANK, as Lightning's own DDP children get; its rank 0
    runs the user's command, checks included: cv=2 without -m trained one fold silently before."""
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1"}

    def torchrun(*overrides: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", str(ROOT / "scripts/train.py")]
        return subprocess.run([*command, *DDP, *FAST, *overrides], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    refused = torchrun("cv=2", f"hydra.run.dir={tmp_path / 'cv'}")
    assert refused.returncode != 0 and "error: cv=2 runs one job per fold: add -m" in refused.stderr
    assert not (tmp_path / "cv").exists()
    trained = torchrun(f"hydra.run.dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/acc"] > 0.8


def test_evaluate_on_two_ddp_processes_prints_its_report_once(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    result = run_script("evaluate.py", f"ckpt_path={notebook_hidden_run.dir}", "trainer.accelerator=cpu",
                        "trainer.devices=2", f"hydra.run.dir={tmp_path / 'eval'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # Before: each rank printed the whole report and its "written to" line.
    assert result.stdout.count("\naccuracy ") + result.stdout.startswith("accuracy ") == 1, result.stdout
    assert result.stdout.count("written to ") == 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == pytest.approx(
        notebook_hidden_run.metrics["test/acc"], abs=1e-6
    )


def test_ddp_sweep_through_submitit_runs_each_job_in_its_folder(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_script(
        "train.py", "-m", "hydra/launcher=submitit_local", *DDP, "model=linear", "optimizer=adam,sgd", *FAST,
        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == [
        "0_model=linear,optimizer=adam,trainer.max_epochs=1,trainer=ddp",
        "1_model=linear,optimizer=sgd,trainer.max_epochs=1,trainer=ddp",
    ]
    for job in jobs:
        assert (job / "train_ddp_process_1.log").is_file()
        assert sum(map(sum, confusion_matrix(job))) == 10_000
    assert "2 jobs, 2 finished, 0 failed" in (sweep_dir / "summary.md").read_text()


def test_bf16_mixed_precision_trains_on_cpu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "model=linear", *FAST,
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bf16" in result.stdout + result.stderr  # Lightning announces the precision plugin
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.7


@pytest.mark.parametrize("overrides", [["engine=chunked"], ["engine=per_step", "system.head=sigmoid"]])
def test_the_system_and_the_data_module_pickle(tmp_path: Path, overrides: list[str]) -> None:
    run = compose(compose_train(["data/augment=affine", *overrides], tmp_path, DATA_DIR))
    system, datamodule = pickle.loads(pickle.dumps((run.system, run.datamodule)))  # what ddp_spawn sends
    assert type(system.fast_path) is type(run.system.fast_path)
    assert system.automatic_optimization == run.system.automatic_optimization
    for a, b in zip(system.state_dict().values(), run.system.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    logits, labels = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    assert torch.equal(system.loss(logits, labels), run.system.loss(logits, labels))
    assert datamodule.hparams == run.datamodule.hparams and datamodule.engine == run.engine
    assert datamodule.augment is not None


def test_ddp_spawn_two_cpu_processes_train_and_test(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # The command of the issue: the default trainer group, Lightning's strategy name.
    spawn = ("trainer.strategy=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1")
    args = (*spawn, "trainer.limit_train_batches=20", "model=linear", *FAST[2:], f"hydra.run.dir={run_dir}")
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout  # really two processes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["test/acc"] > 0.5 and metrics["val/acc_best"] > 0.5
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 20  # 20 batches on each rank
    # Spawned processes receive the pickled module's tensors in shared memory: each test image is still
    # counted once (the metric states were shared and counted twice before the system made its own).
    confmat = confusion_matrix(run_dir)
    assert sum(map(sum, confmat)) == 10_000
    assert sum(confmat[i][i] for i in range(10)) / 10_000 == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_an_error_in_a_spawned_process_is_one_line(tmp_path: Path) -> None:
    spawn = ("trainer.strategy=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1")
    result = run_script("train.py", *spawn, "optimizer.lr=1e30", *FAST[1:],
                        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    # Before: the child's traceback inside torch's ProcessRaisedException, exit status 1.
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: train/loss_step is nan at step 50 (epoch 0): training diverged; lower optimizer.lr or check the data"
    )


def test_the_mistakes_grid_shows_the_whole_test_sets_mistakes(tmp_path: Path) -> None:
    """The grid of the most confident mistakes showed rank 0's share of the test set alone: test/acc and the
    confusion matrix counted both ranks', the grid's 32 tiles came from rank 0's 20 images."""
    data, run_dir = write_idx_set(tmp_path / "tiny", n_train=200, n_test=40), tmp_path / "run"
    # Random pixels: about 36 of the 40 test images are mistakes, more than either rank's 20 images can hold.
    tiny = (f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10")
    result = run_script("train.py", *DDP, "model=linear", *tiny, *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    confmat = confusion_matrix(run_dir)
    mistakes = sum(map(sum, confmat)) - sum(confmat[i][i] for i in range(10))
    assert sum(map(sum, confmat)) == 40 and mistakes > 24, confmat  # whole-set counts; rows of 8 tiles
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    [event] = events.Images("test/misclassified")
    grid = Image.open(io.BytesIO(event.encoded_image_string))
    shown = min(32, mistakes)  # callbacks.test_report.num_mistakes
    expected = image_grid(
        torch.zeros(shown, 28, 28), ["true 0\npred 1 (99.0%)"] * shown, title="Most confident mistakes"
    )
    assert (grid.height, grid.width) == expected.shape[:2]  # 4 rows of tiles; rank 0's 20 images filled 3 at most
