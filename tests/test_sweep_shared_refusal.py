"""A setting that every job of a sweep shares and refuses: one line before the first job, not one per job."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_script, write_idx_set

TINY = ("data.download=false", "data.verify=false", "model=linear", "callbacks.progress_bar.refresh_rate=0")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("data.folds=3", "data.fold=0,1,2"),  # folds with the default data.val_size=5000
            "error: data.folds=3 with data.val_size=5000: under cross-validation the fold is the validation set; "
            "set data.val_size=0 (cv=K does)",
        ),
        (("optimizer.lr=0", "model=linear,hidden"), "error: optimizer.lr=0 is out of range: must be a number > 0"),
        (
            ("optimizer.lr=0", "model=linear,hidden", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
            "error: optimizer.lr=0 is out of range: must be a number > 0",
        ),
    ],
)
def test_a_setting_every_job_refuses_is_refused_once_before_the_first_job(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    """Before: each job printed the line (``job 0 failed: ConfigError: ...``), and the sweep ran to its end, exit 1."""
    data = write_idx_set(tmp_path / "tiny")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_script("train.py", "-m", f"data.root={data}", *TINY, *overrides, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert [line for line in output.splitlines() if line.startswith("error:")] == [message], output[-3000:]
    assert "Launching" not in output and "job 0" not in output and "Traceback" not in output, output[-3000:]
    assert list(cwd.iterdir()) == []  # no sweep folder left behind


def test_a_job_whose_own_swept_value_is_refused_leaves_the_others_to_run(tmp_path: Path) -> None:
    data = write_idx_set(tmp_path / "tiny")
    sweep_dir = tmp_path / "sweep"
    overrides = (*TINY, "data.val_size=10", "trainer.max_epochs=1", "optimizer.lr=0,0.001")
    result = run_script("train.py", "-m", f"data.root={data}", *overrides, f"hydra.sweep.dir={sweep_dir}")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "job 0 failed: ConfigError: optimizer.lr=0 is out of range: must be a number > 0" in output
    assert "job 1 ok: test/acc" in output
    assert "error: 1 of 2 jobs failed" in output
