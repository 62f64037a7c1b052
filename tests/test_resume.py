"""Killed runs resume without lost or repeated work; same seed, same numbers; checkpoints load safely."""

from __future__ import annotations

import itertools
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import kill_at_first_checkpoint, run_script, self_signal_module, train, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.data.loaders import TrainBatches
from mnistlab.engine.chunks import ChunkedBatches

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

# Linear model, batch 128: 55,000 / 128 -> 430 optimizer steps per epoch.
STEPS_PER_EPOCH = 430
QUICK_MNIST = ("model=linear", "data.batch_size=128", "callbacks.progress_bar.refresh_rate=0")


def load_all_checkpoints(run_dir: Path) -> list[str]:
    """Loads every checkpoint of a run with weights_only=True (raises on any pickled object)."""
    names = []
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert ckpt["state_dict"] and ckpt["hyper_parameters"]["net"]
        names.append(path.name)
    return names


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    """The steps of ``tag`` as TensorBoard shows them, read over all event files of the folder."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def test_killed_run_resumes_in_its_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [f"hydra.run.dir={run_dir}", *QUICK_MNIST, "trainer.max_epochs=3"]
    kill_at_first_checkpoint([*args, "callbacks.last_checkpoint.every_n_steps=100"], last)
    assert not (run_dir / "metrics.json").exists()
    killed_at = torch.load(last, weights_only=True)  # the mid-epoch checkpoint, complete and safe
    assert 0 < killed_at["global_step"] < STEPS_PER_EPOCH
    saved_config = (run_dir / ".hydra" / "config.yaml").read_text()

    result = run_script("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exists and is not empty" not in result.stderr  # Lightning's warning of a resume's own checkpoints/
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    assert 0.90 <= metrics["test/acc"] <= 0.94, metrics
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved_config
    assert (run_dir / ".hydra" / "resume" / "overrides.yaml").exists()
    assert load_all_checkpoints(run_dir) == ["best.ckpt", "last.ckpt"]

    # One TensorBoard run: continuous curves, no step twice, none missing after the restart.
    steps = scalar_steps(run_dir, "train/loss_step")
    assert all(a < b for a, b in itertools.pairwise(steps)), steps
    # Lightning logs batch b (0-based, counted over the run) when (b + 1) % log_every_n_steps == 0, after
    # the callbacks' on_train_batch_end: a kill right after a mid-epoch checkpoint may lose that one point.
    expected = list(range(49, 3 * STEPS_PER_EPOCH, 50))
    assert set(expected) - set(steps) <= {killed_at["global_step"] - 1} and set(steps) <= set(expected), steps
    assert scalar_steps(run_dir, "train/loss") == [STEPS_PER_EPOCH * e - 1 for e in (1, 2, 3)]
    assert scalar_steps(run_dir, "val/acc") == [STEPS_PER_EPOCH * e - 1 for e in (1, 2, 3)]


def test_a_killed_run_with_a_schedule_resumes_and_ends_its_schedule(tmp_path: Path) -> None:
    """resume= continues the run's own schedule; only a new run from a checkpoint (ckpt_path=) may not."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [f"hydra.run.dir={run_dir}", f"data.root={data}", "data.download=false", "data.verify=false",
            "data.val_size=10", "data.batch_size=2", "scheduler=one_cycle", "trainer.max_epochs=3",
            "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    kill_at_first_checkpoint([*args, "callbacks.last_checkpoint.every_n_steps=5"], last)
    assert torch.load(last, weights_only=True)["global_step"] < 3 * 195  # 390 training images in batches of 2
    result = run_script("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    final = torch.load(last, weights_only=True)
    [schedule] = final["lr_schedulers"]
    assert final["global_step"] == schedule["last_epoch"] == schedule["total_steps"] == 3 * 195


# A callback of the test's own (on PYTHONPATH): the run sends itself SIGTERM (or, for a Ctrl-C, SIGINT) once past
# optimizer step 300 (at it per step; the default engine may step several batches at once), mid-way through its
# second epoch (195 steps an epoch: 390 training images in batches of 2), and not again in its resume.
SELF_SIGNAL = """
import os, signal
import lightning.pytorch as pl

class SelfSignal(pl.Callback):
    sent = False

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= 300 and trainer.ckpt_path is None and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.{signal})
"""


def interrupted_at_step_300(
    tmp_path: Path, *args: str, signal: str = "SIGTERM", status: int = 143
) -> tuple[Path, dict[str, str], str]:
    """Trains a linear model on 390 tiny images with ``args`` to its end (in ``tmp_path/whole``), then again in
    ``tmp_path/run``, where it sends itself ``signal`` past step 300 and exits with ``status``.

    Returns:
        The interrupted run's folder, the environment its resume needs (``SELF_SIGNAL`` importable) and its stderr.
    """
    env = self_signal_module(tmp_path, SELF_SIGNAL.format(signal=signal))
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    args = (f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10", "model=linear",
            "data.batch_size=2", "callbacks.progress_bar.refresh_rate=0", *args)  # fmt: skip
    whole = run_script("train.py", *args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "run"
    stopped = run_script(
        "train.py", *args, "+callbacks.self_signal._target_=selfsignal.SelfSignal", f"hydra.run.dir={run_dir}", env=env
    )
    assert stopped.returncode == status and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    return run_dir, env, stopped.stderr


def assert_resumes_to_the_uninterrupted_weights(run_dir: Path, whole: Path, env: dict[str, str]) -> None:
    """Resumes ``run_dir`` to its end: the same steps and weights, bit for bit, as the uninterrupted run ``whole``."""
    assert run_script("train.py", f"resume={run_dir}", env=env).returncode == 0
    resumed, uninterrupted = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (run_dir, whole))
    assert resumed["global_step"] == uninterrupted["global_step"] == 3 * 195
    for name, weight in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], weight), name


def test_a_sigterm_saves_its_step_and_the_resumed_run_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    """A cluster's time limit sends SIGTERM: Lightning ended the fit with status 0 and the work since the
    last save was lost. Now the step is saved, the status is 143 and the last line says how to continue."""
    run_dir, env, stderr = interrupted_at_step_300(tmp_path, "trainer.max_epochs=3", "engine=per_step")
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted; continue with: python scripts/train.py resume={run_dir} (checkpoints/last.ckpt: 1 epoch, "
        "300 steps done)"  # 195 steps an epoch (390 training images in batches of 2): mid-epoch, saved at the signal
    )
    assert not (run_dir / "metrics.json").exists()
    assert_resumes_to_the_uninterrupted_weights(run_dir, tmp_path / "whole", env)


def test_a_ctrl_c_mid_epoch_saves_its_step_and_the_resumed_run_ends_with_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    """Before: a Ctrl-C stopped at once and the run resumed from its last epoch end, losing every step since;
    then it stopped before Lightning logged the saved step, so its train/loss_step point (299) was never logged."""
    # Lightning's exit status for a Ctrl-C it handled itself.
    run_dir, env, stderr = interrupted_at_step_300(tmp_path, "trainer.max_epochs=3", signal="SIGINT", status=1)
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("Ctrl-C: stopping at the end of this training step (if a validation or the epoch's")
    assert lines[-1] == (
        f"interrupted; continue with: python scripts/train.py resume={run_dir} (checkpoints/last.ckpt: 1 epoch, "
        "300 steps done)"  # 195 steps an epoch: saved at the step of the Ctrl-C, not at the epoch's end (195)
    )
    assert 299 in scalar_steps(run_dir, "train/loss_step")  # logged every 50 steps: the saved step's point
    assert_resumes_to_the_uninterrupted_weights(run_dir, tmp_path / "whole", env)
    assert scalar_steps(run_dir, "train/loss_step") == scalar_steps(tmp_path / "whole", "train/loss_step")


def test_ctrl_c_says_how_to_continue_and_that_command_finishes_the_run(tmp_path: Path) -> None:
    import signal

    from conftest import signal_at_first_checkpoint

    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [f"hydra.run.dir={run_dir}", *QUICK_MNIST, "trainer.max_epochs=200"]
    code, stderr = signal_at_first_checkpoint(args, last, signal.SIGINT, cwd=tmp_path)
    assert code == 1 and "Traceback" not in stderr, stderr[-3000:]  # Lightning's graceful shutdown
    hint = stderr.strip().splitlines()[-1]
    assert hint.startswith(f"interrupted; continue with: python scripts/train.py resume={run_dir} "), hint
    done = torch.load(last, weights_only=True)["epoch"] + 1
    resume = hint.split("python scripts/train.py ")[1].split()[0]  # resume=RUN_DIR, as the line says
    result = run_script("train.py", resume, f"trainer.max_epochs={done + 1}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == done + 1


def test_same_seed_gives_identical_results(tmp_path: Path) -> None:
    def train(name: str) -> Path:
        run_dir = tmp_path / name
        args = (
            "model=linear",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "callbacks.progress_bar.refresh_rate=0",
        )
        result = run_script("train.py", f"hydra.run.dir={run_dir}", "seed=7", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return run_dir

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(train, ["a", "b"])
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert metrics_a["test/acc"] == metrics_b["test/acc"] and metrics_a["test/loss"] == metrics_b["test/loss"]
    for name in ("best.ckpt", "last.ckpt"):
        weights_a, weights_b = (torch.load(d / "checkpoints" / name, weights_only=True)["state_dict"] for d in (a, b))
        assert weights_a.keys() == weights_b.keys()
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_loader_state_continues_the_same_permutation(tmp_path: Path) -> None:
    from mnistlab.data import MNISTDataModule

    dm = MNISTDataModule(root=str(write_idx_set(tmp_path)), download=False, verify=False, val_size=0, batch_size=4)
    dm.setup("fit")
    x, y = dm.train_set

    def loader() -> ChunkedBatches:
        return ChunkedBatches(TrainBatches(x, y, batch_size=4, seed=3), 2)

    full = loader()
    full.sampler.set_epoch(1)
    # 60 samples, 15 batches; epoch 1 starts at global batch 15, so chunks end at 1, 3, ..., 15: 8 chunks.
    reference = [torch.cat([b for b, _ in chunk]) for chunk in full]
    interrupted = loader()
    interrupted.sampler.set_epoch(1)
    it = iter(interrupted)
    next(it), next(it), next(it)
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches_done": 5}
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [torch.cat([b for b, _ in chunk]) for chunk in resumed]
    assert len(rest) == len(reference) - 3 and all(torch.equal(a, b) for a, b in zip(rest, reference[3:], strict=True))
    assert resumed.state_dict() == {"epoch": 2, "batches_done": 0}  # epoch finished
    moved_on = loader()
    moved_on.load_state_dict(state)
    moved_on.sampler.set_epoch(2)  # Lightning starts the next epoch: the old position no longer applies
    assert len(list(moved_on)) == len(reference)


def test_last_checkpoint_is_the_final_epoch_even_when_val_acc_does_not_improve(tmp_path: Path) -> None:
    # A learning rate too small to change any prediction: val/acc never improves on the first epoch's, which stays
    # "best", so Lightning's own save_last would stop after it. (mode=min on val/acc did this, and is now refused.)
    run = train(
        tmp_path / "run",
        *QUICK_MNIST,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=100",
        "optimizer.lr=1e-12",
    )
    last = torch.load(run.dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(run.dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * 100)  # 100 batches per epoch
    assert best["global_step"] < last["global_step"]


def test_resume_extends_a_finished_run_and_refuses_other_overrides(tmp_path: Path) -> None:
    run = train(tmp_path / "run", "model=linear", "data.batch_size=512", "trainer.max_epochs=1")
    extended = run_script(
        "train.py", f"resume={run.dir}", "trainer.max_epochs=2", "callbacks.time_to_target.target=0.5"
    )
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert run.metrics["epochs"] == 2  # the same folder, now two epochs
    assert "trainer.max_epochs: 2\n" in (run.dir / "hparams.yaml").read_text()  # it kept the first launch's 1
    # A target first given when continuing is found where it was reached: the first epoch's validation
    # (the checkpoint keeps each new best with its step), not the first one after the restart.
    assert run.metrics["time_to_target/step"] == 108
    assert torch.load(run.checkpoint, weights_only=True)["global_step"] == 2 * 108  # 55,000 / 512 -> 108 a epoch
    refused = run_script("train.py", f"resume={run.dir}", "optimizer.lr=0.5")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: resume=") and "cannot take optimizer.lr" in last, refused.stderr[-2000:]
    assert run.metrics["epochs"] == 2  # nothing ran


def test_a_folder_that_holds_a_run_or_someone_elses_files_is_refused_before_hydra_writes_into_it(
    tmp_path: Path,
) -> None:
    run = train(tmp_path / "run", "model=linear", "data.batch_size=512", "trainer.max_epochs=1")
    records = {p: p.read_bytes() for p in (run.dir / ".hydra").rglob("*") if p.is_file()}
    events = sorted(run.dir.glob("events.out.tfevents.*"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.log").write_text("my own notes\n")
    cut = tmp_path / "cut"  # a copy whose last.ckpt a full disk cut short, killed before its test
    shutil.copytree(run.dir, cut)
    (cut / "metrics.json").unlink()
    (cut / "checkpoints" / "last.ckpt").write_bytes(run.checkpoint.read_bytes()[:3000])
    cases = {
        # Before: re-tested the finished run, adding three TensorBoard event files each time.
        (f"resume={run.dir}",): f"error: resume={run.dir}: the run has finished its 1 epoch and its test; "
        "add trainer.max_epochs=N (N > 1) to train it further",
        # Before: trained a new run over the old one's checkpoints, metrics and records.
        (f"hydra.run.dir={run.dir}",): f"error: hydra.run.dir={run.dir} holds another run (checkpoints/, "
        f"metrics.json), which this one would overwrite: continue it with resume={run.dir}, or give a new folder",
        # Before: a FileExistsError traceback.
        (
            f"resume={run.checkpoint}",
        ): f"error: resume={run.checkpoint} is a file: give the run's folder, resume={run.dir}",
        # Before: deleted the folder, the user's train.log with it.
        (f"resume={mine}",): f"error: resume={mine}: not a run folder (no .hydra/config.yaml)",
        # Before: Lightning's load failed inside the fit, with a note about predict.py and ONNX files.
        (f"resume={cut}",): f"error: resume={cut}: its checkpoints/last.ckpt is damaged or unreadable, so it cannot "
        f"continue; its training had finished: test its best weights with python scripts/evaluate.py "
        f"ckpt_path={cut}/checkpoints/best.ckpt",
        # Before: a sweep of one job that trained nothing and summarised no job.
        ("-m", f"resume={run.dir}"): "error: resume=RUN_DIR continues one run: drop -m (a killed sweep "
        "continues with its own command plus hydra.sweep.dir=SWEEP_DIR)",
    }
    with ThreadPoolExecutor(2) as pool:
        results = dict(
            zip(cases, pool.map(lambda args: run_script("train.py", *args, cwd=tmp_path), cases), strict=True)
        )
    for args, message in cases.items():
        result = results[args]
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == message, result.stderr[-2000:]
    assert {p: p.read_bytes() for p in (run.dir / ".hydra").rglob("*") if p.is_file()} == records
    assert sorted(run.dir.glob("events.out.tfevents.*")) == events and run.metrics["epochs"] == 1
    assert (
        sorted(p.name for p in mine.iterdir()) == ["train.log"] and (mine / "train.log").read_text() == "my own notes\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "mine", "run"]  # no outputs/ or multirun/ left


def test_a_resumed_csv_run_keeps_the_rows_logged_before_the_kill(tmp_path: Path) -> None:
    import csv

    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [f"hydra.run.dir={run_dir}", *QUICK_MNIST, "trainer.max_epochs=2", "logger=csv"]
    kill_at_first_checkpoint([*args, "callbacks.last_checkpoint.every_n_steps=300"], last)
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS_PER_EPOCH

    result = run_script("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "will be deleted" not in result.stderr  # Lightning's warning: they are kept
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    steps = [int(row["step"]) for row in rows if row["train/loss_step"]]
    # Every logging step of both epochs once, those before the kill included (Lightning's writer deleted them).
    assert steps == list(range(49, 2 * STEPS_PER_EPOCH, 50)), steps
    epochs = [(int(row["step"]), row["epoch"]) for row in rows if row["val/acc"]]
    assert epochs == [(STEPS_PER_EPOCH - 1, "0"), (2 * STEPS_PER_EPOCH - 1, "1")], epochs


def test_the_csv_rows_kept_on_resume_keep_their_names_under_a_prefix(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from mnistlab.resume.loggers import _keep_csv_rows

    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    header = "p-epoch,p-train/loss_step,p-val/acc,step\n"
    metrics.write_text(f"{header}0,0.5,,49\n0,0.4,,99\n0,,0.9,99\n1,0.3,,149\n")
    _keep_csv_rows(CSVLogger(tmp_path, name="", version="csv", prefix="p"), 120)
    # Before: p-p-train/loss_step, p-p-epoch (the logger prefixed names read back with the prefix).
    assert metrics.read_text() == f"{header}0,0.5,,49\n0,0.4,,99\n0,,0.9,99\n"


def test_a_resumed_csv_run_killed_before_its_first_rows_has_no_deletion_warning(tmp_path: Path) -> None:
    import warnings

    from lightning.pytorch.loggers import CSVLogger

    from mnistlab.resume.loggers import _keep_csv_rows

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "hparams.yaml").write_text("lr: 0.1\n")  # the killed run's, written before its first flush
    logger = CSVLogger(tmp_path, name="", version="csv")
    _keep_csv_rows(logger, 40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log_metrics({"train/loss_step": 0.5}, 49)
        logger.save()
    # Before: "Previous log files in this directory will be deleted", when the resumed run first logged.
    assert not [w for w in caught if "will be deleted" in str(w.message)], [str(w.message) for w in caught]
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "step,train/loss_step\n49,0.5\n"
