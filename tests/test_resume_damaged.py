"""A run whose last.ckpt is damaged: the hint that ``resume=`` prints is a command that works, run as printed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import TrainedRun, run_script, train

TINY = ("model=linear", "trainer.limit_train_batches=5", "data.val_size=500")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, TrainedRun]:
    """The same tiny run trained for one and for two epochs."""
    root = tmp_path_factory.mktemp("runs")
    return {epochs: train(root / f"e{epochs}", *TINY, f"trainer.max_epochs={epochs}") for epochs in (1, 2)}


def damaged_copy(run: TrainedRun, into: Path) -> Path:
    """A copy of ``run`` killed before its test, whose last.ckpt a full disk cut short."""
    shutil.copytree(run.dir, into)
    (into / "metrics.json").unlink()
    (into / "checkpoints" / "last.ckpt").write_bytes(run.checkpoint.read_bytes()[:3000])
    return into


def printed_command(run: Path, cwd: Path) -> tuple[str, str, list[str]]:
    """``resume=run``'s error line, and the script and arguments of the command it prints."""
    refused = run_script("train.py", f"resume={run}", cwd=cwd)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    found = re.search(r"python scripts/(\w+\.py) (.*)$", line)
    assert found is not None, line
    return line, found.group(1), shlex.split(found.group(2))


def test_the_hint_to_start_from_the_best_weights_runs_as_printed(runs: dict[int, TrainedRun], tmp_path: Path) -> None:
    """Before: ``ckpt_path=<best>`` alone, which the next run refused (``holds another network than this run's
    model``): the run's own ``model=linear`` was missing."""
    cut = damaged_copy(runs[2], tmp_path / "cut")
    shutil.copy(runs[1].dir / "checkpoints" / "best.ckpt", cut / "checkpoints" / "best.ckpt")  # killed in epoch 2
    line, script, args = printed_command(cut, tmp_path)
    assert line == (
        f"error: resume={cut}: its checkpoints/last.ckpt is damaged or unreadable, so it cannot continue; start a "
        f"new run from its best weights: python scripts/train.py {' '.join(TINY)} trainer.max_epochs=2 "
        f"callbacks.progress_bar.refresh_rate=0 ckpt_path={cut}/checkpoints/best.ckpt"
    )
    result = run_script(script, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [new_run] = (tmp_path / "outputs").glob("*/*/metrics.json")  # a new run folder, not the damaged one
    assert json.loads(new_run.read_text())["epochs"] == 2 and not (cut / "metrics.json").exists()


def test_a_finished_training_is_pointed_to_its_test(runs: dict[int, TrainedRun], tmp_path: Path) -> None:
    """Its best weights finished every epoch: a new run from them would be refused, so the hint tests them."""
    cut = damaged_copy(runs[1], tmp_path / "cut")
    line, script, args = printed_command(cut, tmp_path)
    assert line.endswith(
        "its training had finished: test its best weights with python scripts/evaluate.py "
        f"ckpt_path={cut}/checkpoints/best.ckpt"
    )
    result = run_script(script, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [report] = (cut / "eval").glob("*/metrics.json")  # evaluate.py's report, beside the run's checkpoints
    assert json.loads(report.read_text())["test/acc"] > 0.1  # above chance: the best weights were tested


def test_a_fold_or_a_trial_is_restarted_as_one_job(runs: dict[int, TrainedRun], tmp_path: Path) -> None:
    """A cv fold's or an Optuna trial's folder: ``cv=K`` and ``hparams_search=`` need ``-m``, so the hint runs
    the one job alone (``data.folds=K data.val_size=0`` with its recorded fold, seed and sampled values)."""
    from omegaconf import OmegaConf

    from mnistlab.resume.checkpoint import restart_hint

    job = tmp_path / "3"
    (job / ".hydra").mkdir(parents=True)
    task = ["cv=5", "data.fold=2", "seed=44", "model=linear", "hparams_search=optuna", "optimizer.lr=0.01"]
    OmegaConf.save({"hydra": {"overrides": {"hydra": [], "task": task}}}, job / ".hydra" / "hydra.yaml")
    best = runs[1].dir / "checkpoints" / "best.ckpt"
    assert restart_hint(job, best, max_epochs=10) == (
        "; start a new run from its best weights: python scripts/train.py data.folds=5 data.val_size=0 "
        f"data.fold=2 seed=44 model=linear optimizer.lr=0.01 ckpt_path={best}"
    )


def test_an_empty_resume_says_it_names_no_folder(tmp_path: Path) -> None:
    """``resume=$RUN`` with the variable unset: before, "resume=: not a run folder (no .hydra/config.yaml)"."""
    result = run_script("train.py", "resume=", cwd=tmp_path)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and lines == [
        "error: resume='' names no run folder: give the folder of the run to continue "
        "(resume=outputs/<date>/<time>), or leave it out to start a new run"
    ], lines
    assert list(tmp_path.iterdir()) == []
