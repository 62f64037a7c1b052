"""A full disk or a read-only folder at any writer: one line naming the file and the cause, the last checkpoint kept.

The faults are injected where the system would raise them: the writer's own system call raises
``OSError(ENOSPC)`` or ``OSError(EACCES)`` (the checkpoint's and ``metrics.json``'s rename, TensorBoard's
event-file append, MLflow's metric upload, the sweep summary's rename). The run then continues from
the checkpoint it kept, as ``resume=RUN_DIR`` does, and finishes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, ROOT, compose_train, run_script, write_idx_set
from omegaconf import OmegaConf

from mnistlab.checkpoints import read_checkpoint
from mnistlab.composition import compose
from mnistlab.resume.run import continued_config
from mnistlab.training import fit_and_test
from mnistlab.user_errors import user_error

# 80 training images in batches of 20: 4 steps an epoch; last.ckpt at steps 2, 4, 6, 8.
SETTINGS = [
    "model=linear",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "data.val_size=20",
    "data.batch_size=20",
    "callbacks.last_checkpoint.every_n_steps=2",
    "callbacks.progress_bar.refresh_rate=0",
]
CODES = (errno.ENOSPC, errno.EACCES)


def run_config(tmp_path: Path, *overrides: str):
    cfg = compose_train([*SETTINGS, *overrides], tmp_path)
    cfg.data.root, cfg.data.verify, cfg.data.download = str(write_idx_set(tmp_path / "tiny", n_train=100)), False, False
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra saves: resume reads it
    return cfg


def fit(cfg) -> dict[str, float]:
    run = compose(cfg)
    return fit_and_test(run.trainer, run.system, run.datamodule, Path(cfg.paths.output_dir), ckpt_path=cfg.ckpt_path)


def failing_after(calls: int, code: int, when=lambda *args: True):
    """A stand-in for a write call that raises ``OSError(code)`` from its ``calls + 1``-th matching call on."""
    seen = {"n": 0}

    def fail(original):
        def call(*args, **kwargs):
            if when(*args):
                seen["n"] += 1
                if seen["n"] > calls:
                    raise OSError(code, os.strerror(code))
            return original(*args, **kwargs)

        return call

    return fail


def named(name: str):
    return lambda src, dst, *rest: Path(dst).name == name


def inject(monkeypatch: pytest.MonkeyPatch, writer: str, code: int) -> str:
    """Makes ``writer`` fail with ``code`` once the run has saved a checkpoint; returns what the message must name."""
    if writer in ("checkpoint", "metrics"):
        name = "last.ckpt" if writer == "checkpoint" else "metrics.json"
        calls = 1 if writer == "checkpoint" else 0  # the second checkpoint write fails
        monkeypatch.setattr(os, "replace", failing_after(calls, code, named(name))(os.replace))
        return f"checkpoints/{name}" if writer == "checkpoint" else name
    if writer == "tensorboard":
        from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem

        # Each checkpoint flushes the events first: the third append is after the first checkpoint.
        monkeypatch.setattr(LocalFileSystem, "append", failing_after(3, code)(LocalFileSystem.append))
        return "the TensorBoard events in"
    from mlflow import MlflowClient

    monkeypatch.setattr(MlflowClient, "log_batch", failing_after(3, code)(MlflowClient.log_batch))
    return "the MLflow store"


@pytest.mark.parametrize("code", CODES, ids=errno.errorcode.get)
@pytest.mark.parametrize("writer", ["checkpoint", "metrics", "tensorboard", "mlflow"])
def test_a_write_that_fails_stops_the_run_in_one_line_and_resume_finishes_it(
    writer: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "mlflow":
        pytest.importorskip("mlflow", reason='the [mlflow] extra is not installed (pip install -e ".[mlflow]")')
    cfg = run_config(tmp_path, *(["logger=tb_mlflow"] if writer == "mlflow" else []))
    run_dir = Path(cfg.paths.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    with monkeypatch.context() as patch:
        where = inject(patch, writer, code)
        with pytest.raises(Exception) as caught:
            fit(cfg)
    message = user_error(caught.value)
    print(f"{writer} {errno.errorcode[code]}: error: {message}")
    assert message is not None and "\n" not in message, caught.value
    assert message.startswith("cannot write ") and where in message and os.strerror(code) in message
    kept = read_checkpoint(last)  # the last good checkpoint: whole, and readable
    assert kept["global_step"] in ((2,) if writer == "checkpoint" else (2, 4, 6, 8))
    assert not list(last.parent.glob(".*.tmp"))  # no half-written file left behind

    cfg.resume = str(run_dir)  # python scripts/train.py resume=RUN_DIR, once the disk has room again
    metrics = fit(continued_config(cfg, []))
    assert metrics["epochs"] == 2 and read_checkpoint(last)["global_step"] == 8


@pytest.mark.parametrize("code", CODES, ids=errno.errorcode.get)
def test_a_summary_that_cannot_be_written_ends_the_sweep_in_one_line(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from hydra_plugins.mnistlab_sweeps.callbacks import SweepSummary

    job = tmp_path / "sweep" / "0_seed=1"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "metrics.json").write_text('{"test/acc": 0.9}\n')
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    config.hydra.job = {"config": {"override_dirname": {"exclude_keys": []}}}
    monkeypatch.setattr(os, "replace", failing_after(0, code, named("summary.csv"))(os.replace))
    with pytest.raises(SystemExit) as stopped:
        SweepSummary().on_multirun_end(config)
    line = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "\n" not in line
    assert line.startswith(f"error: cannot write {tmp_path / 'sweep' / 'summary.csv'}: {os.strerror(code)}")
    assert not (tmp_path / "sweep" / "summary.csv").exists() and not list((tmp_path / "sweep").glob(".*.tmp"))


def test_train_py_on_a_full_disk_prints_one_line_and_resume_finishes_the_run(tmp_path: Path) -> None:
    """``scripts/train.py`` with TensorBoard's disk full after the first checkpoint: one line, exit 2, no traceback."""
    # A Python whose TensorBoard event-file appends fail from the fourth on (the first checkpoint's flush is third).
    code = (
        "import errno, os, runpy, sys;"
        "from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem as fs;"
        "append, calls = fs.append, [];"
        "full = lambda *a: calls.append(1) or (len(calls) > 3 and fs.fail()) or append(*a);"
        "fs.fail = lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)));"
        "fs.append = full; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    data, run_dir = write_idx_set(tmp_path / "tiny", n_train=100), tmp_path / "run"
    args = [f"data.root={data}", "data.download=false", "data.verify=false", *SETTINGS, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR)}
    full = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "scripts" / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 2 and "Traceback" not in full.stdout + full.stderr, full.stderr[-3000:]
    errors = [line for line in (full.stdout + full.stderr).splitlines() if line.startswith("error: ")]
    print(errors[0])
    assert errors == [full.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith(f"error: cannot write the TensorBoard events in {run_dir}")
    assert "No space left on device" in errors[0]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] in (2, 4, 6)
    resumed = run_script("train.py", f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 8
