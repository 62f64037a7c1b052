"""A sweep's console: one line per job and the summary; each job's output in its own log; ranking by validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from conftest import run_script, write_idx_set
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.mnistlab_sweeps.callbacks import job_outcome
from mnistlab.sweeps import write_summary

TINY = ("data.download=false", "data.verify=false", "data.val_size=10", "trainer.max_epochs=1")


def test_an_8_job_sweep_prints_one_line_per_job(tmp_path: Path) -> None:
    data = write_idx_set(tmp_path / "tiny")
    sweep_dir = tmp_path / "sweep"
    # 8 jobs; the two with lr=1e30 diverge (NonFiniteLossError), the others train.
    result = run_script(
        "train.py",
        "-m",
        f"data.root={data}",
        *TINY,
        "optimizer=sgd",
        "optimizer.lr=1e30,0.1",
        "seed=1,2,3,4",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    console = (result.stdout + result.stderr).splitlines()
    print(f"console: {len(console)} lines for 8 jobs")  # 41 when measured
    assert result.returncode == 1 and len(console) <= 60, "\n".join(console)
    assert "Traceback" not in result.stdout + result.stderr
    progress = [line for line in console if line.startswith("job ")]
    assert len(progress) == 8 and sum(" failed: NonFiniteLossError: " in line for line in progress) == 4
    assert console[-1] == f"error: 4 of 8 jobs failed (see {sweep_dir / 'summary.md'})"
    for job in (p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        log = (job / "train.log").read_text()
        record = json.loads((job / "job.json").read_text())
        if "lr=1e+30" in job.name:
            assert record["status"] == "failed" and "Traceback" in log  # the trace is in the job's log
            assert record["error"].startswith("NonFiniteLossError: train/loss")
        else:
            assert record["status"] == "ok" and "`Trainer.fit` stopped" in log  # Lightning's lines: in the log
    assert "GPU available" not in result.stdout + result.stderr  # ... and not on the console


def test_pruned_trials_are_reported_as_pruned(capsys) -> None:
    ret = JobReturn()
    ret.status, ret.return_value = JobStatus.FAILED, optuna.TrialPruned("pruned at epoch 1 (val/acc below the median)")
    assert job_outcome(ret) == ("pruned", "pruned at epoch 1 (val/acc below the median)")
    assert capsys.readouterr().err == ""  # not Hydra's "Error executing job with overrides"


@pytest.mark.parametrize(
    "content",
    ['{"val/acc_best": NaN}', '{"val/acc_best": "0.9"}', '{"val/acc_b', "null", '{"val/acc_best": true}', None],
)
def test_an_optuna_trial_without_a_finite_objective_fails_not_the_sweep(tmp_path: Path, content: str | None) -> None:
    from types import SimpleNamespace

    from hydra_plugins.mnistlab_sweeps._optuna_search import OptunaSearch

    if content is not None:  # NaN, a string, a metrics.json cut short by a full disk, none at all
        (tmp_path / "metrics.json").write_text(content)
    ret = JobReturn()
    ret.status, ret.return_value = JobStatus.COMPLETED, 0.9
    ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    search = SimpleNamespace(conf=SimpleNamespace(objective="val/acc_best"))
    assert OptunaSearch._outcome(search, ret) == (optuna.trial.TrialState.FAIL, None)
    (tmp_path / "metrics.json").write_text('{"val/acc_best": 0.9}')
    assert OptunaSearch._outcome(search, ret) == (optuna.trial.TrialState.COMPLETE, 0.9)


def job(sweep: Path, name: str, val: float | None, test: float, status: str = "ok") -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- seed={name[0]}\n")
    metrics = {"test/acc": test, "test/loss": 1 - test, "epochs": 1}
    if val is not None:
        metrics["val/acc_best"] = val
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "job.json").write_text(json.dumps({"status": status, "error": "", "seconds": 1.0}))


def test_the_summary_ranks_by_validation_not_test(tmp_path: Path) -> None:
    job(tmp_path / "a", "0_x", val=0.95, test=0.90)
    job(tmp_path / "a", "1_y", val=0.90, test=0.99)  # best on the test set, which must not choose
    job(tmp_path / "a", "2_z", val=None, test=0.50, status="pruned")
    jobs, markdown = write_summary(tmp_path / "a")
    assert [j.name for j in jobs] == ["0_x", "1_y", "2_z"]
    assert "| **best** | 0_x |" in markdown and "Ranked by the best validation accuracy" in markdown
    assert markdown.splitlines()[0] == "# Sweep summary: 3 jobs, 2 finished, 1 pruned, 0 failed"
    job(tmp_path / "b", "0_x", val=None, test=0.90)
    job(tmp_path / "b", "1_y", val=None, test=0.99)
    jobs, markdown = write_summary(tmp_path / "b")
    assert [j.name for j in jobs] == ["1_y", "0_x"]
    assert "Ranked by test/acc: these runs have no validation set (data.val_size=0)." in markdown


def test_a_long_job_shows_its_progress_on_the_sweep_console(tmp_path: Path) -> None:
    """Before: a sweep job's output all went to its train.log; a CNN fold showed nothing for minutes."""
    import io

    import lightning.pytorch as pl

    from mnistlab.callbacks import JobProgress
    from mnistlab.data import MNISTDataModule
    from mnistlab.engine import choose_engine
    from mnistlab.models import MLP
    from mnistlab.systems import Classifier

    console = io.StringIO()
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = pl.Trainer(max_epochs=2, callbacks=[JobProgress(3, console, every=0)], **quiet, default_root_dir=tmp_path)
    engine = choose_engine(trainer)
    assert engine.chunk == 50  # it keeps the chunked engine: its batch hook is read at chunk ends
    data = write_idx_set(tmp_path / "tiny")  # 60 training images, 10 of them for validation: 13 batches of 4
    dm = MNISTDataModule(str(data), download=False, verify=False, val_size=10, batch_size=4, engine=engine)
    trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm)
    lines = console.getvalue().splitlines()
    assert [line.split(" s")[0].rsplit(", ", 1)[0] for line in lines] == [
        "  job 3: epoch 1/2, batch 13/13",
        "  job 3: epoch 2/2, batch 13/13",
    ]
    assert "val/acc" not in lines[0] and re.fullmatch(r"  job 3: .*, \d+ s; val/acc \d\.\d{4}", lines[1])
    quiet_console = io.StringIO()
    trainer = pl.Trainer(max_epochs=1, callbacks=[JobProgress(3, quiet_console)], **quiet, default_root_dir=tmp_path)
    trainer.fit(Classifier(MLP(hidden_units=8), engine=engine), datamodule=dm)
    assert quiet_console.getvalue() == ""  # shorter than 30 s: no line


@pytest.mark.parametrize("launcher", ["joblib", "basic"])
def test_a_sweep_launched_in_batches_numbers_the_launchers_lines_by_job(tmp_path: Path, launcher: str) -> None:
    """Before, under joblib: ``#0 #1 #0`` for jobs 0, 1 and 2 in batches of 2 (each launch counted from 0)."""
    data = write_idx_set(tmp_path / "tiny")
    jobs = ("model=linear", "seed=1,2,3", "hydra.sweeper.max_batch_size=2", f"hydra/launcher={launcher}")
    # One joblib worker runs its jobs in the sweep's process: the launcher's lines, without a worker's start-up.
    workers = ("hydra.launcher.n_jobs=1",) if launcher == "joblib" else ()
    result = run_script(
        "train.py", "-m", f"data.root={data}", *TINY, *jobs, *workers, f"hydra.sweep.dir={tmp_path / 'sweep'}"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert re.findall(r"\t#(\d+) : .* seed=(\d)", output) == [("0", "1"), ("1", "2"), ("2", "3")], output
    assert sorted(re.findall(r"^job (\d) ok", output, flags=re.M)) == ["0", "1", "2"]


def test_a_launchs_lines_are_numbered_from_its_first_job_on_that_logger_only(caplog) -> None:
    """The filter of ``launch_lines_numbered`` adds the first job's number to ``#N : ...`` lines, for that launch."""
    import logging

    from mnistlab.process.jobs import launch_lines_numbered

    launch, other = logging.getLogger("test.launcher"), logging.getLogger("test.other")
    caplog.set_level(logging.INFO)
    with launch_lines_numbered("test.launcher", 4):
        launch.info("\t#{} : {}".format(0, "seed=5"))
        launch.info("\t#%d : %s", 1, "seed=6")  # a message with arguments is left as it is
        other.info("\t#0 : seed=5")
    launch.info("\t#0 : seed=7")  # after the launch: as given
    assert [r.getMessage() for r in caplog.records] == [
        "\t#4 : seed=5",
        "\t#1 : seed=6",
        "\t#0 : seed=5",
        "\t#0 : seed=7",
    ]


def test_a_value_listed_twice_is_named_before_the_jobs_run(tmp_path: Path) -> None:
    """``-m model=linear,linear`` ran the same job twice without a word."""
    data = write_idx_set(tmp_path / "tiny", n_train=90, n_test=30)
    command = ("train.py", "-m", f"data.root={data}", *TINY, "model=linear,hidden,linear", "seed=1,2")
    result = run_script(*command, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    said = [line for line in (result.stdout + result.stderr).splitlines() if "are the same run" in line]
    assert len(said) == 1 and "jobs 0 and 4 are the same run (data.root=" in said[0], said
    assert said[0].endswith(" model=linear seed=1): a value is listed twice"), said
