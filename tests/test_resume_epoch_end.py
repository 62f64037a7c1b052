"""A run stopped in an epoch's end (its last step, its validation) resumes with that validation and epoch end once."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_script, self_signal_module, tiny_linear_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# A callback of the test's own (on PYTHONPATH): in the first run (not its resume) the process sends itself SIGNAL
# as the second epoch's validation starts, after that epoch's last training step.
SELF_SIGNAL = """
import os, signal
import lightning.pytorch as pl

class SignalInValidation(pl.Callback):
    def on_validation_batch_start(self, trainer, *args):
        if trainer.ckpt_path is None and not trainer.sanity_checking and trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.{signal})

class SignalBeforeValidation(pl.Callback):  # at the second epoch's second step, which a validation follows
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.ckpt_path is None and trainer.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.{signal})

class SignalInLastStep(pl.Callback):  # at the first epoch's last step (5 steps an epoch), which its validation follows
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.ckpt_path is None and trainer.current_epoch == 0 and batch_idx == 4:
            os.kill(os.getpid(), signal.{signal})
"""


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the folder's event files as TensorBoard shows it: (step, value) pairs per tag."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.mark.parametrize(
    ("signal", "status", "callback", "extra"),
    [
        # A Ctrl-C during the validation: it stopped before Lightning logged the epoch's end.
        ("SIGINT", 1, "SignalInValidation", ()),
        # A kill during the validation that follows a step save at the epoch's last step (5 steps an epoch):
        # Lightning resumed that save as a finished epoch, past its validation.
        ("SIGKILL", -9, "SignalInValidation", ("callbacks.last_checkpoint.every_n_steps=5",)),
        # A SIGTERM there (2 batches of 5 images): the validation ends, and the epoch with its last.ckpt. Before,
        # Lightning stopped at the next validation batch, unsaved, and the resume trained the epoch again.
        ("SIGTERM", 143, "SignalInValidation", ("data.eval_batch_size=5",)),
        # The same in a validation within the epoch (after its second step): saved once the validation ends.
        ("SIGTERM", 143, "SignalInValidation", ("data.eval_batch_size=5", "trainer.val_check_interval=2")),
        # A SIGTERM in the step that such a validation follows: the same (before, Lightning stopped in the validation).
        ("SIGTERM", 143, "SignalBeforeValidation", ("data.eval_batch_size=5", "trainer.val_check_interval=2")),
        # A Ctrl-C in a step that a validation within the epoch follows: the run stopped before that validation,
        # which the resumed run, restarting from the step's save, skipped.
        ("SIGINT", 1, "SignalBeforeValidation", ("trainer.val_check_interval=2",)),
    ],
)
def test_a_run_stopped_in_a_validation_resumes_with_the_uninterrupted_curves(
    tmp_path: Path, signal: str, status: int, callback: str, extra: tuple[str, ...]
) -> None:
    env = self_signal_module(tmp_path, SELF_SIGNAL.format(signal=signal))
    args = (*tiny_linear_args(tmp_path, max_epochs=3), *extra)  # 5 steps an epoch
    whole = run_script("train.py", *args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "run"
    hook = f"+callbacks.self_signal._target_=selfsignal.{callback}"
    stopped = run_script("train.py", *args, hook, f"hydra.run.dir={run_dir}", env=env)
    assert stopped.returncode == status and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    if signal == "SIGTERM":
        line = "SIGTERM: stopping once this validation ends, with last.ckpt saved"
        assert (stopped.stdout + stopped.stderr).count(line) == 1, stopped.stdout[-3000:]
        done = "1 epoch, 7 steps" if "trainer.val_check_interval=2" in extra else "2 epochs, 10 steps"
        assert stopped.stderr.strip().endswith(f"(checkpoints/last.ckpt: {done} done)"), stopped.stderr[-300:]
    if callback == "SignalInValidation" and signal == "SIGINT":
        # It said "at the end of this training step", and then ran the validation to its end.
        assert "Ctrl-C: stopping once this validation ends, with checkpoints/last.ckpt saved" in stopped.stderr
    resumed = run_script("train.py", f"resume={run_dir}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # Every point of every curve once, at the uninterrupted run's steps and with its values: the second epoch's
    # val/acc, train/loss and train/acc included, and the third epoch's train/acc averaging its own batches only.
    assert curves(run_dir) == curves(tmp_path / "whole")


def test_a_ctrl_c_in_an_epochs_last_step_says_that_the_epochs_validation_runs_first(tmp_path: Path) -> None:
    """It said "stopping at the end of this training step", then ran the epoch's validation and end (kept: the
    validation's points and the epoch's last.ckpt are the resume's) before it stopped."""
    env = self_signal_module(tmp_path, SELF_SIGNAL.format(signal="SIGINT"))
    run_dir = tmp_path / "run"
    stopped = run_script(
        "train.py", *tiny_linear_args(tmp_path, max_epochs=3),  # 5 steps an epoch
        "+callbacks.self_signal._target_=selfsignal.SignalInLastStep", f"hydra.run.dir={run_dir}", env=env,
    )  # fmt: skip
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert (
        "Ctrl-C: stopping at the end of this training step (if a validation or the epoch's end follows it: once "
        "they are done), with checkpoints/last.ckpt saved (Ctrl-C again: at once)"
    ) in stopped.stderr
    assert stopped.stderr.strip().endswith("(checkpoints/last.ckpt: 1 epoch, 5 steps done)"), stopped.stderr[-300:]
    assert [step for step, _ in curves(run_dir)["val/acc"]] == [4]  # the epoch's validation ran, and was logged
