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


def test_an_optuna_search_refuses_a_setting_every_trial_shares_once_before_its_first_trial(tmp_path: Path) -> None:
    """Before: ``job 0 failed: ConfigError: trainer.max_epochs=0 is out of range ...`` for each trial, then ``error: 2
    of 2 jobs failed``, exit 1, and a sweep folder with its study."""
    data = write_idx_set(tmp_path / "tiny")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=0")
    result = run_script("train.py", "-m", f"data.root={data}", *TINY, *search, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    error = "error: trainer.max_epochs=0 is out of range: must be an integer >= 1"
    assert [line for line in output.splitlines() if line.startswith("error:")] == [error], output[-3000:]
    assert "Launching" not in output and "job 0" not in output and "Traceback" not in output, output[-3000:]
    assert list(cwd.iterdir()) == []  # no sweep folder, no study


def test_the_first_trial_check_leaves_the_studys_trial_0_as_the_sampler_proposes_it(tmp_path: Path) -> None:
    """The check asks trial 0 of a study of its own: the search's study gets the same trial 0, its only trial."""
    import optuna

    data = write_idx_set(tmp_path / "tiny")
    sweep_dir = tmp_path / "search"
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=1", "data.val_size=10", "trainer.max_epochs=1")
    result = run_script("train.py", "-m", f"data.root={data}", *TINY, *search, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "A new study created in memory" not in result.stdout + result.stderr  # the check's study is not shown
    study = optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{sweep_dir}/optuna.db")
    (trial,) = study.trials
    # What a new study with the search's sampler (conf/hparams_search/optuna.yaml: seed 42) proposes, unchecked.
    alone = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=42, n_startup_trials=5), direction="maximize")
    assert trial.number == 0 and trial.params == alone.ask(trial.distributions).params


def test_an_optuna_trial_whose_own_sampled_value_is_refused_leaves_the_search_to_run(tmp_path: Path) -> None:
    """Trial 0 draws trainer.max_epochs=0 (seed 42); the fixed settings alone are not refused, so no line before."""
    data = write_idx_set(tmp_path / "tiny")
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=1", "++hydra.sweeper.params={trainer.max_epochs:'1,0'}")
    sweep_dir = tmp_path / "search"
    result = run_script("train.py", "-m", f"data.root={data}", *TINY, *search, f"hydra.sweep.dir={sweep_dir}")
    output = result.stdout + result.stderr
    assert "job 0 failed: ConfigError: trainer.max_epochs=0 is out of range" in output, output[-3000:]
    assert "error: 1 of 1 jobs failed" in output and result.returncode == 1, output[-3000:]
