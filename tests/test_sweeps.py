"""Multirun sweeps on real MNIST: job folders, summary, HParams, failures, launchers, Optuna."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_script
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

# One epoch of 100 batches (optimizer steps), then full validation and test: real training, kept short.
FAST = ("trainer.max_epochs=1", "trainer.limit_train_batches=100", "callbacks.progress_bar.refresh_rate=0")
GRID = ("model=linear,hidden", "optimizer=adam,sgd")


def sweep(sweep_dir: Path, *overrides: str):
    return run_script("train.py", "-m", *overrides, *FAST, f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("grid") / "sweep"
    result = sweep(sweep_dir, *GRID)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "# Sweep summary: 4 jobs, 4 finished, 0 failed" in result.stdout  # printed at the end
    return sweep_dir


def test_grid_sweep_gives_named_job_folders_and_a_ranked_summary(grid_sweep: Path) -> None:
    jobs = sorted(p.name for p in grid_sweep.iterdir() if p.is_dir())
    assert jobs == [
        "0_model=linear,optimizer=adam,trainer.max_epochs=1",
        "1_model=linear,optimizer=sgd,trainer.max_epochs=1",
        "2_model=hidden,optimizer=adam,trainer.max_epochs=1",
        "3_model=hidden,optimizer=sgd,trainer.max_epochs=1",
    ]
    metrics = {job: json.loads((grid_sweep / job / "metrics.json").read_text()) for job in jobs}
    rows = summary_rows(grid_sweep)
    assert [r["job"] for r in rows] == sorted(jobs, key=lambda j: -metrics[j]["val/acc_best"])  # never test/acc
    for row in rows:
        m = metrics[row["job"]]
        assert (row["status"], row["epochs"]) == ("ok", "1")
        assert float(row["test/acc"]) == pytest.approx(m["test/acc"], abs=1e-4) and m["test/acc"] > 0.7
        assert float(row["val/acc_best"]) == pytest.approx(m["val/acc_best"], abs=1e-4)
        assert row["overrides"].startswith("model=") and float(row["seconds"]) > 0
    table = (grid_sweep / "summary.md").read_text().splitlines()
    marked = [line for line in table if line.startswith("| **best** |")]
    assert len(marked) == 1 and rows[0]["job"] in marked[0]


def test_each_job_is_a_tensorboard_run_with_real_hparams_metrics(grid_sweep: Path) -> None:
    # The HParams tab's columns: the sweep's one experiment, in its own folder (mnistlab.sweeps.hparams_columns).
    events = EventAccumulator(str(grid_sweep))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"test/acc", "test/loss", "val/acc_best"}
    for job_dir in (p for p in grid_sweep.iterdir() if p.is_dir()):
        metrics = json.loads((job_dir / "metrics.json").read_text())
        events = EventAccumulator(str(job_dir), size_guidance={"scalars": 0})
        events.Reload()
        content = events.PluginTagToContent("hparams")
        assert "_hparams_/experiment" not in content  # TensorBoard would take one job's as every job's columns
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = list(yaml.safe_load((job_dir / "hparams.yaml").read_text()))  # the record, in its order
        # The swept keys first, then the run's other hyperparameters under short names.
        assert hparams[:2] == ["model", "optimizer"] and "optimizer.lr" in hparams and len(hparams) <= 25
        assert set(start.session_start_info.hparams) == set(hparams) <= {h.name for h in experiment.hparam_infos}
        for tag in ("test/acc", "test/loss", "val/acc_best"):
            assert events.Scalars(tag)[-1].value == pytest.approx(metrics[tag], rel=1e-6)


def test_joblib_launcher_gives_the_same_rows(grid_sweep: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, *GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    keys = ("job", "overrides", "test/acc", "test/loss", "val/acc_best", "epochs", "status")
    expected = [[r[k] for k in keys] for r in summary_rows(grid_sweep)]
    assert [[r[k] for k in keys] for r in summary_rows(sweep_dir)] == expected


def test_seeds_of_one_configuration_are_grouped_as_mean_and_std(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "model=linear", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    accs = [float(r["test/acc"]) for r in summary_rows(sweep_dir)]
    assert len(accs) == 2 and accs[0] != accs[1]  # the seed changes the split, init and shuffle
    mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2**0.5
    table = (sweep_dir / "summary.md").read_text()
    assert "## Mean ± std over seeds" in table
    assert f"| model=linear trainer.max_epochs=1 | 2 | {mean:.4f} ± {std:.4f} |" in table


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    # Job 0's loss goes NaN (the training's non-finite loss check raises), job 1 trains.
    result = sweep(sweep_dir, "model=hidden", "optimizer=sgd", "optimizer.lr=1e30,0.1")
    assert result.returncode != 0
    assert "error: 1 of 2 jobs failed" in result.stderr
    rows = {r["job"][0]: r for r in summary_rows(sweep_dir)}
    assert rows["0"]["status"] == "failed"
    assert rows["0"]["error"].startswith("NonFiniteLossError: train/loss_step is nan at step")
    assert rows["1"]["status"] == "ok" and float(rows["1"]["test/acc"]) > 0.7
    assert (sweep_dir / rows["1"]["job"] / "metrics.json").is_file()
    assert "Traceback" in (sweep_dir / rows["0"]["job"] / "train.log").read_text()  # kept for the user


def test_optuna_search_resumes_its_sqlite_study(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    for n_trials in (3, 5):
        result = sweep(sweep_dir, "hparams_search=optuna", f"hydra.sweeper.n_trials={n_trials}")
        assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert len(study.trials) == 5
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 5
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # the resumed run samples anew
    assert set(study.best_params) == {
        "optimizer",
        "optimizer.lr",
        "optimizer.weight_decay",
        "model.hidden_units",
        "data.batch_size",
    }
    rows = summary_rows(sweep_dir)
    assert len(rows) == 5
    best_job = next(r for r in rows if r["job"].startswith(f"{study.best_trial.number}_"))
    assert float(best_job["val/acc_best"]) == pytest.approx(study.best_value, abs=1e-4)
    table = (sweep_dir / "summary.md").read_text()
    assert f"Best trial {study.best_trial.number}: val/acc_best = {study.best_value:.4f}" in table
    # The best parameters reported are those its job trained with (its floats have four significant digits).
    trained = OmegaConf.load(sweep_dir / best_job["job"] / ".hydra" / "config.yaml")
    reported = json.loads((sweep_dir / "optuna.json").read_text())["best"]["params"]
    assert reported["optimizer.lr"] == trained.optimizer.lr != study.best_params["optimizer.lr"]
    assert f"`optimizer.lr` = {trained.optimizer.lr}\n" in table


def test_the_command_lines_sweeps_are_dimensions_of_the_search(tmp_path: Path) -> None:
    """As in Hydra's own Optuna sweeper. Before: each stopped the search with Hydra's error, "Ambiguous value for
    argument" (a list: "add --multirun", which was given), "Sweep parameters ... requires --multirun" (a range) or a
    traceback, "ConfigLoader is not set" (a glob of a group's options)."""
    sweep_dir = tmp_path / "search"
    swept = (
        "model=glob(*,exclude=[cnn,record_cnn])",
        "data.batch_size=32,64",  # the preset searches 32-256: the command line's choices replace them
        "optimizer.lr=tag(log,interval(0.001,0.002))",
        "system.label_smoothing=interval(0,0.1)",
    )
    result = sweep(sweep_dir, "hparams_search=optuna", "hydra.sweeper.n_trials=3", *swept)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in study.trials:  # the preset's keys, the added ones, and the command line's range for optimizer.lr
        assert set(trial.params) == {"optimizer", "optimizer.lr", "optimizer.weight_decay", "model.hidden_units",
                                     "data.batch_size", "model", "system.label_smoothing"}  # fmt: skip
        assert trial.distributions["model"].choices == ("hidden", "linear")
        assert trial.distributions["data.batch_size"].choices == (32, 64)
        assert 0 <= trial.params["system.label_smoothing"] <= 0.1
        assert 0.001 <= trial.params["optimizer.lr"] <= 0.002 and trial.distributions["optimizer.lr"].log
    for row in summary_rows(sweep_dir):  # each job trained with its trial's values
        trained = OmegaConf.load(sweep_dir / row["job"] / ".hydra" / "config.yaml")
        trial = study.trials[int(row["job"].split("_")[0])]
        assert trained.system.label_smoothing == pytest.approx(trial.params["system.label_smoothing"], rel=1e-3)
        assert 0.001 <= trained.optimizer.lr <= 0.002


def test_a_searched_option_without_a_searched_setting_is_refused(tmp_path: Path) -> None:
    """Before: each trial that drew model=cnn failed on its own ("model.hidden_units is not a setting ...")."""
    result = sweep(tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "model=choice(linear,cnn)")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: model=cnn has no model.hidden_units, which the search sets in every trial: search model without cnn, "
        "or without model.hidden_units in a copy of conf/hparams_search/optuna.yaml"
    ], result.stderr[-3000:]
    assert not (tmp_path / "search").exists()


def test_a_glob_of_a_groups_options_sweeps_the_grid(tmp_path: Path) -> None:
    """Before: a traceback from the command line's own check, "ConfigLoader is not set"."""
    from mnistlab.command_line import config_mistake

    train = Path(__file__).resolve().parents[1] / "scripts" / "train.py"
    assert config_mistake(train, "train", ["-m", "model=glob(x*)"]) == (
        "model=glob(x*): no model matches (cnn, hidden, linear, record_cnn)"
    )
    result = sweep(tmp_path / "grid", "model=glob(*,exclude=[cnn,record_cnn])", "+trainer.limit_val_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(row["overrides"].split()[0] for row in summary_rows(tmp_path / "grid")) == [
        "model=hidden",
        "model=linear",
    ]


def test_a_seed_list_beside_cv_in_a_search_is_named_as_such(tmp_path: Path) -> None:
    """The fold check reads the command's own overrides, where seed=1,2 is a list (not a searched key)."""
    result = sweep(tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "cv=2", "seed=1,2")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: cv=2 gives fold i the seed S+i: set one seed S (e.g. seed=7), not a list"
    ], result.stderr[-3000:]
    assert not (tmp_path / "search").exists()


def test_a_range_in_a_grid_sweep_is_refused_in_one_line(tmp_path: Path) -> None:
    """Before: a traceback from Hydra's BasicSweeper, "does not support sweep type : INTERVAL_SWEEP"."""
    result = sweep(tmp_path / "grid", "optimizer.lr=interval(0.001,0.01)")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: optimizer.lr=interval(0.001,0.01) is a range, which only a search samples: add "
        "hparams_search=optuna, or list values: optimizer.lr=0.001,0.01"
    ], result.stderr[-3000:]
    assert not (tmp_path / "grid").exists()


def test_another_sweep_in_a_sweeps_folder_is_refused_and_its_own_command_continues(grid_sweep: Path) -> None:
    """Before: ``model=linear,cnn`` into the folder of ``model=linear,hidden ...`` mixed both into one summary."""
    before = {p.name: p.stat().st_mtime_ns for p in grid_sweep.rglob("*")}
    other = sweep(grid_sweep, "model=linear,cnn", "optimizer=adam,sgd")
    assert other.returncode == 2 and other.stderr.strip().splitlines()[-1] == (
        f"error: hydra.sweep.dir={grid_sweep} holds another sweep (model=linear,hidden optimizer=adam,sgd "
        "trainer.max_epochs=1 trainer.limit_train_batches=100), whose jobs this one's would mix with: "
        "continue it with its own command, or give a new folder"
    ), other.stderr[-3000:]
    # Its own settings in another order would number the jobs otherwise: before, two finished jobs ran again
    # into new folders, and the summary counted 6 jobs of a 4-job grid.
    reordered = sweep(grid_sweep, *reversed(GRID))
    assert reordered.returncode == 2 and reordered.stderr.strip().splitlines()[-1] == (
        f"error: hydra.sweep.dir={grid_sweep} was launched with its settings in another order "
        "(model=linear,hidden optimizer=adam,sgd trainer.max_epochs=1 trainer.limit_train_batches=100), "
        "which numbers its jobs otherwise: continue it with them in that order"
    ), reordered.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in grid_sweep.rglob("*")} == before
    again = sweep(grid_sweep, *GRID, "trainer.accelerator=cpu")  # its own command; hardware may differ
    assert again.returncode == 0 and "# Sweep summary: 4 jobs, 4 finished, 0 failed" in again.stdout, again.stderr
    assert len(summary_rows(grid_sweep)) == 4


def test_searched_keys_the_run_does_not_have_are_refused() -> None:
    from hydra_plugins.mnistlab_sweeps._search_space import check_searched_key
    from mnistlab.errors import ConfigError

    config = OmegaConf.create({"hydra": {"runtime": {"choices": {"optimizer": "adam"}}}, "optimizer": {"lr": 0.001}})
    searched = ["optimizer", "optimizer.momentum", "optimizer.lr", "+model.dropout", "sead"]
    for key in searched[:-1]:  # a group, a key of a searched group's other choices (sgd), a setting, an addition
        check_searched_key(config, key, searched)
    with pytest.raises(ConfigError, match="sead is not a setting or config group of this run"):
        check_searched_key(config, "sead", searched)
    # Before: `-m hparams_search=optuna model=cnn` said only that model.hidden_units is no setting of the run.
    cnn = OmegaConf.create({"hydra": {"runtime": {"choices": {"model": "cnn"}}}, "model": {"channels": [32, 64]}})
    with pytest.raises(ConfigError) as err:
        check_searched_key(cnn, "model.hidden_units", ["model.hidden_units"])
    assert str(err.value) == (
        "hydra.sweeper.params.model.hidden_units: model.hidden_units is not a setting of this run's model=cnn; "
        "search without it in a copy of conf/hparams_search/optuna.yaml (hparams_search=<the copy's name>), or give "
        "a model that has it"
    )


def test_a_command_line_value_of_a_searched_key_is_refused(tmp_path: Path) -> None:
    """Before: ``optimizer.lr=0.5`` came before each trial's own ``optimizer.lr=...``, which silently replaced it."""
    from hydra_plugins.mnistlab_sweeps._search_space import check_not_fixed
    from mnistlab.errors import ConfigError

    searched = ["optimizer", "optimizer.lr", "data.batch_size"]
    check_not_fixed(["model=linear", "optimizer.momentum=0.9", "cv=3", "hparams_search=optuna"], searched)
    with pytest.raises(ConfigError, match=r"^optimizer=sgd: optimizer is searched \(hydra.sweeper.params\)"):
        check_not_fixed(["model=linear", "optimizer=sgd"], searched)
    result = sweep(tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "optimizer.lr=0.5")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: optimizer.lr=0.5: optimizer.lr is searched (hydra.sweeper.params), so every trial would set its own "
        "value instead; drop it, or search without it in a copy of conf/hparams_search/optuna.yaml"
    ], result.stderr[-3000:]
    assert not (tmp_path / "search").exists()


def test_a_command_line_value_of_a_searched_addition_is_refused_too() -> None:
    """A searched ``+trainer.foo`` and a given ``+trainer.foo=0.5``: each trial's ``+trainer.foo=...`` came after it,
    and Hydra failed every trial ("Could not append to config"), after the study was made."""
    from hydra_plugins.mnistlab_sweeps._search_space import check_not_fixed
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^\+trainer.foo=0.5: trainer.foo is searched"):
        check_not_fixed(["model=linear", "+trainer.foo=0.5"], ["optimizer.lr", "+trainer.foo"])
    check_not_fixed(["model=linear", "+trainer.foo_bar=0.5"], ["optimizer.lr", "+trainer.foo"])


def test_a_sweep_kept_by_val_loss_records_and_ranks_the_loss(tmp_path: Path) -> None:
    """Before: a checkpoint kept by the lowest ``val/loss`` had its loss recorded as ``val/acc_best``; the summary
    then ranked the run with the highest loss first, and an Optuna search maximised the loss."""
    by_loss = ("callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min")
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "model=linear,hidden", *by_loss)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    assert len(metrics) == 2 and all("val/acc_best" not in m for m in metrics)
    for m in metrics:  # a loss, near the test loss, not an accuracy
        assert 0 < m["val/loss_best"] < 1 and abs(m["val/loss_best"] - m["test/loss"]) < 0.1
    rows = summary_rows(sweep_dir)
    assert [float(r["val/loss_best"]) for r in rows] == sorted(round(m["val/loss_best"], 4) for m in metrics)
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())  # one folder a job, its slash an underscore
    assert [j.split(",")[1] for j in jobs] == ["callbacks.model_checkpoint.monitor=val_loss"] * 2, jobs
    assert "Ranked by the lowest validation loss (val/loss_best)" in (sweep_dir / "summary.md").read_text()
    search = sweep(tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.n_trials=1", *by_loss)
    assert search.returncode == 2 and search.stderr.strip().splitlines() == [
        "error: hydra.sweeper.objective=val/acc_best, but callbacks.model_checkpoint.monitor=val/loss records "
        "val/loss_best instead: set hydra.sweeper.objective=val/loss_best (and its direction)"
    ], search.stderr[-3000:]
    wrong_way = sweep(tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.objective=val/loss_best", *by_loss)
    assert wrong_way.returncode == 2 and wrong_way.stderr.strip().splitlines() == [
        "error: hydra.sweeper.direction=maximize with objective val/loss_best: set hydra.sweeper.direction=minimize"
    ], wrong_way.stderr[-3000:]
    from hydra_plugins.mnistlab_sweeps._search_space import check_objective
    from mnistlab.errors import ConfigError

    config = OmegaConf.create({"callbacks": {"optuna_pruning": {"monitor": "val/acc"}}})
    check_objective(config, "val/acc", "maximize")
    config.callbacks.optuna_pruning.monitor = "val/ac"  # before: never logged, so no trial was ever pruned
    with pytest.raises(ConfigError, match="monitor=val/ac is not a metric the run logs"):
        check_objective(config, "val/acc", "maximize")
    config.callbacks.optuna_pruning.monitor = "val/loss"
    with pytest.raises(ConfigError, match="monitor=val/loss is pruned as if it were to maximize"):
        check_objective(config, "val/acc", "maximize")
    by_loss_config = OmegaConf.create({"callbacks": {"model_checkpoint": {"monitor": "val/loss"}}})
    by_loss_config.callbacks.optuna_pruning = {"monitor": "train/loss_step"}  # before: refused beside minimize ...
    check_objective(by_loss_config, "val/loss_best", "minimize")
    config.callbacks.optuna_pruning.monitor = "train/loss_step"  # ... and taken beside maximize
    with pytest.raises(ConfigError, match="monitor=train/loss_step is pruned as if it were to maximize"):
        check_objective(config, "val/acc", "maximize")
    assert not (tmp_path / "search").exists()


def test_sweep_params_on_the_command_line(tmp_path: Path) -> None:
    """Before: ``+hydra.sweeper.params.model='linear,hidden'`` ended in OmegaConf's "Unexpected type for root:
    NoneType" traceback (the grid's params were null), the same entry under ``hparams_search=optuna`` in a
    ``ValueError`` traceback, and an unquoted list in Hydra's two lines with exit status 1."""
    grid = sweep(tmp_path / "grid", "+hydra.sweeper.params.model='linear,hidden'", "trainer.limit_train_batches=2")
    assert grid.returncode == 0, grid.stderr[-3000:]
    assert "# Sweep summary: 2 jobs, 2 finished, 0 failed" in grid.stdout
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=1", "trainer.limit_train_batches=2")
    optuna_run = sweep(tmp_path / "search", *search, "hydra.sweeper.params.optimizer='sgd,adam'")
    assert optuna_run.returncode == 0 and "Trials: 1 complete." in optuna_run.stdout, optuna_run.stderr[-3000:]

    from hydra_plugins.mnistlab_sweeps._search_space import distribution
    from mnistlab.command_line import config_mistake
    from mnistlab.errors import ConfigError

    train = Path(__file__).parents[1] / "scripts" / "train.py"
    assert config_mistake(train, "train", ["-m", "+hydra.sweeper.params.model=linear,hidden"]) == (
        "+hydra.sweeper.params.model=linear,hidden: an entry of hydra.sweeper.params is one string; quote it: "
        "\"+hydra.sweeper.params.model='linear,hidden'\""
    )
    assert config_mistake(train, "train", ["-m", 'hydra.sweeper.params={model:"linear,hidden"}']) == (
        'hydra.sweeper.params has no model yet: add to it with ++hydra.sweeper.params={model:"linear,hidden"}'
    )
    for valid in ("++hydra.sweeper.params.model='linear,hidden'", '++hydra.sweeper.params={model:"linear,hidden"}'):
        assert config_mistake(train, "train", ["-m", valid]) is None, valid
    assert distribution("model", "linear,hidden").choices == ("linear", "hidden")
    assert distribution("seed", "range(1,4)").choices == (1, 2, 3)
    lr = distribution("optimizer.lr", "tag(log,interval(1e-4,0.1))")
    assert isinstance(lr, optuna.distributions.FloatDistribution) and (lr.low, lr.high, lr.log) == (1e-4, 0.1, True)
    assert isinstance(distribution("seed", "int(interval(0,9))"), optuna.distributions.IntDistribution)
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.params.seed=7 is one value, nothing to search"):
        distribution("seed", "7")
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.params.seed=\[1, 2\]: an entry is \{type"):
        distribution("seed", [1, 2])


def test_an_optuna_trial_without_its_objective_shows_failed(tmp_path: Path) -> None:
    """Before: a job that finished without the study's objective (here ``val/acc``, which no metrics.json holds)
    was a failed trial in the study, but ``ok`` on the console and in summary.md, and the sweep exited 0."""
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.objective=val/acc")
    result = sweep(tmp_path / "search", *search, "trainer.limit_train_batches=2")
    assert result.returncode == 1, result.stderr[-3000:]
    reason = "the Optuna trial failed: its objective val/acc is missing from its metrics.json"
    assert any(line.startswith(f"job 0 failed: {reason} (") for line in result.stdout.splitlines()), result.stdout
    assert "Trials: 1 fail." in result.stdout
    [row] = summary_rows(tmp_path / "search")
    assert (row["status"], row["error"]) == ("failed", reason)


def test_a_resumed_sweep_job_counts_the_time_of_its_earlier_launches(tmp_path: Path) -> None:
    """Before: a job killed after its first checkpoint and resumed by the same command showed only its last
    launch's seconds in summary.md, as if its first launch's training had cost nothing."""
    from conftest import kill_at_first_checkpoint

    sweep_dir = tmp_path / "sweep"
    args = ["-m", "model=linear", "data.batch_size=128", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}"]
    args += ["callbacks.last_checkpoint.every_n_steps=100", "callbacks.progress_bar.refresh_rate=0"]
    job = sweep_dir / ",".join(["0_callbacks.last_checkpoint.every_n_steps=100", *sorted(args[1:4])])
    kill_at_first_checkpoint(args, job / "checkpoints" / "last.ckpt")
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    earlier = json.loads((job / "metrics.json").read_text())["fit_seconds_earlier"]
    launch = json.loads((job / "job.json").read_text())["seconds"]
    assert earlier > 0
    [row] = summary_rows(sweep_dir)
    assert float(row["seconds"]) == round(launch + earlier, 1)
    assert f"({launch} s; {launch + earlier:.1f} s with its earlier launches)" in result.stdout
    fresh = sweep(tmp_path / "fresh", "model=linear", "trainer.limit_train_batches=2")  # one launch: nothing to add
    assert fresh.returncode == 0 and "earlier launches" not in fresh.stdout, fresh.stdout[-3000:]
    assert "fit_seconds_earlier" not in json.loads(next((tmp_path / "fresh").glob("0_*/metrics.json")).read_text())


def test_a_sweep_whose_experiment_file_changed_is_refused_when_continued(tmp_path: Path) -> None:
    """Before: an experiment file edited between two launches of a sweep (optimizer.lr 1e-3 -> 0.5) gave the
    jobs of the second launch the new recipe beside the first launch's kept jobs, in one summary, silently."""
    import shutil

    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    recipe = conf / "experiment" / "mine.yaml"
    recipe.write_text("# @package _global_\ndefaults:\n  - override /model: linear\noptimizer:\n  lr: 1.0e-3\n")
    sweep_dir = tmp_path / "sweep"
    command = (f"hydra.searchpath=[file://{conf}]", "experiment=mine", "seed=1,2", "trainer.limit_train_batches=2")
    first = sweep(sweep_dir, *command)
    assert first.returncode == 0, first.stderr[-3000:]
    for job in sweep_dir.glob("1_*"):  # as if the first launch had been killed before job 1
        shutil.rmtree(job)
    recipe.write_text(recipe.read_text().replace("1.0e-3", "0.5"))
    second = sweep(sweep_dir, *command)
    assert second.returncode == 2 and second.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={sweep_dir} was launched with optimizer.lr=0.001, but its command now gives "
        "optimizer.lr=0.5: a config file it reads (e.g. conf/experiment/*.yaml) changed since, and its jobs would "
        "mix two recipes; restore the file, or give a new folder"
    ], second.stderr[-3000:]
    assert not list(sweep_dir.glob("1_*"))
    recipe.write_text(recipe.read_text().replace("0.5", "1.0e-3"))  # restored: the sweep continues
    third = sweep(sweep_dir, *command)
    assert third.returncode == 0 and "# Sweep summary: 2 jobs, 2 finished, 0 failed" in third.stdout

    from hydra_plugins.mnistlab_sweeps.launchers import changed_settings

    before = OmegaConf.create({"model": {"_target_": "a.B"}, "trainer": {"accelerator": "cpu"}, "hydra": {"x": 1}})
    now = OmegaConf.create({"model": {"_target_": "a.C", "k": 2}, "trainer": {"accelerator": "gpu"}, "hydra": {}})
    assert changed_settings(before, now, ["trainer.accelerator"]) == [
        ("model._target_", "a.B", "a.C"),
        ("model.k", "<absent>", 2),
    ]


def test_a_sweep_whose_hydra_sweeper_params_changed_is_refused_when_continued(tmp_path: Path) -> None:
    """Before: the continued sweep compared its jobs' settings, not Hydra's: an experiment file's
    hydra.sweeper.params edited between two launches (seed: 1,2 -> 1,2,3) ran job 2 (seed=3) into the sweep of
    seeds 1 and 2, silently, and its multirun.yaml then recorded the new sweep."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    recipe = conf / "experiment" / "mine.yaml"
    recipe.write_text(
        "# @package _global_\nmodel:\n  hidden_units: 8\nhydra:\n  sweeper:\n    params:\n      seed: 1,2\n"
    )
    sweep_dir = tmp_path / "sweep"
    command = (f"hydra.searchpath=[file://{conf}]", "experiment=mine", "trainer.limit_train_batches=2")
    first = sweep(sweep_dir, *command)
    assert first.returncode == 0 and "# Sweep summary: 2 jobs, 2 finished, 0 failed" in first.stdout
    launched = (sweep_dir / "multirun.yaml").read_text()
    recipe.write_text(recipe.read_text().replace("1,2", "1,2,3"))
    second = sweep(sweep_dir, *command)
    assert second.returncode == 2 and second.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={sweep_dir} was launched with hydra.sweeper.params.seed=1,2, but its command now "
        "gives hydra.sweeper.params.seed=1,2,3, which makes other jobs: its command or a config file it reads (e.g. "
        "conf/experiment/*.yaml) changed since; restore it, or give a new folder"
    ], second.stderr[-3000:]
    assert not list(sweep_dir.glob("2_*")) and (sweep_dir / "multirun.yaml").read_text() == launched

    from hydra_plugins.mnistlab_sweeps.launchers import changed_sweep

    def search(**sweeper: object) -> DictConfig:
        return OmegaConf.create({"hydra": {"sweeper": {"_target_": "a.Search", **sweeper}, "launcher": {"n_jobs": 1}}})

    before = search(n_trials=5, n_jobs=1, params={"optimizer.lr": {"type": "float", "low": 0.1, "high": 1}})
    # More trials, more at once, another launcher: the same search continues.
    assert changed_sweep(before, search(n_trials=9, n_jobs=2, params=before.hydra.sweeper.params)) == []
    now = search(n_trials=5, n_jobs=1, seed=3, params={"optimizer.lr": {"type": "float", "low": 0.2, "high": 1}})
    assert changed_sweep(before, now) == [
        ("hydra.sweeper.params.optimizer.lr.low", 0.1, 0.2),
        ("hydra.sweeper.seed", "<absent>", 3),
    ]


def test_a_test_set_objective_is_refused(tmp_path: Path) -> None:
    """Before: ``hydra.sweeper.objective=test/acc`` ran the study on the test set, which chose the hyperparameters."""
    result = sweep(
        tmp_path / "search", "hparams_search=optuna", "hydra.sweeper.objective=test/acc", "hydra.sweeper.n_trials=1"
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: hydra.sweeper.objective=test/acc lets the test set choose the hyperparameters: search on a "
        "validation score, hydra.sweeper.objective=val/acc_best (test/acc is reported for every trial)"
    ], result.stderr[-3000:]
    assert not (tmp_path / "search").exists()
    from hydra_plugins.mnistlab_sweeps._search_space import check_objective
    from mnistlab.errors import ConfigError

    config = OmegaConf.create({"callbacks": {"model_checkpoint": {"monitor": "val/loss"}}})
    for objective, direction in [("test/loss", "minimize"), ("ensemble/test/acc", "maximize")]:
        with pytest.raises(ConfigError, match=f"objective={objective} lets the .*sweeper.objective=val/loss_best "):
            check_objective(config, objective, direction)
    check_objective(config, "val/loss_best", "minimize")


def test_a_validation_objective_without_a_validation_set_is_refused(tmp_path: Path) -> None:
    """Before: ``experiment=notebook_hidden`` (data.val_size=0) trained every trial to its end, marked each failed
    for its missing val/acc_best, and the search exited 0 with no best trial."""
    search = ("hparams_search=optuna", "experiment=notebook_hidden", "hydra.sweeper.n_trials=1")
    result = sweep(tmp_path / "search", *search)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        "error: hydra.sweeper.objective=val/acc_best is measured on a validation set"
    ), result.stderr[-3000:]
    assert not (tmp_path / "search").exists()

    from conftest import compose_train

    from hydra_plugins.mnistlab_sweeps._search_space import check_validation
    from mnistlab.errors import ConfigError

    space = ["optimizer", "optimizer.lr"]
    with pytest.raises(ConfigError, match=r"objective=val/acc_best .* hold out none \(data.val_size=0\)"):
        check_validation(compose_train(["experiment=notebook_hidden"], tmp_path), "val/acc_best", space)
    for overrides in (["experiment=notebook_hidden", "data.val_size=1000"], ["experiment=notebook_hidden", "cv=3"], []):
        check_validation(compose_train(overrides, tmp_path), "val/acc_best", space)
    check_validation(compose_train(["experiment=notebook_hidden"], tmp_path), "val/acc_best", [*space, "data.val_size"])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            ("hydra.sweeper.objective=val/acc",),
            "maximises val/acc_best: continue it with hydra.sweeper.objective=val/acc",
        ),
        (  # a minimising search of its own, consistent in itself (check_objective), but not the stored study's
            (
                "hydra.sweeper.direction=minimize",
                "hydra.sweeper.objective=val/loss_best",
                "callbacks.model_checkpoint.monitor=val/loss",
                "callbacks.model_checkpoint.mode=min",
                "callbacks.optuna_pruning.monitor=val/loss",
            ),
            "maximises val/acc_best: continue it with hydra.sweeper.objective=val/acc",
        ),
    ],
)
def test_a_continued_study_keeps_its_objective_and_direction(
    tmp_path: Path, setting: tuple[str, ...], message: str
) -> None:
    """Before: the continued search told test/acc means into a study of val/acc_best values, and the summary
    named the old best trial's val/acc_best "test/acc"; a new direction was silently ignored."""
    sweep_dir = tmp_path / "search"
    sweep_dir.mkdir()
    study = optuna.create_study(study_name="mnistlab", storage=f"sqlite:///{sweep_dir}/optuna.db", direction="maximize")
    study.set_user_attr("mnistlab_objective", "val/acc_best")  # as the first launch records it
    result = sweep(sweep_dir, "hparams_search=optuna", "hydra.sweeper.n_trials=1", *setting)
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"error: the study mnistlab in this sweep folder {message}")
    )
    assert len(optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{sweep_dir}/optuna.db").trials) == 0


def test_a_sweep_folder_whose_job_numbers_now_mean_other_jobs_is_refused(tmp_path: Path) -> None:
    """The sweep's own command, but an experiment file's hydra.sweeper.params changed (model: linear,hidden ->
    linear,cnn). Before: job 1 ran again as model=cnn beside the old 1_model=hidden, and one summary held both."""
    from mnistlab.errors import MnistlabError
    from mnistlab.resume.sweep import jobs_to_launch

    for num, model in enumerate(["linear", "hidden"]):
        record = tmp_path / f"{num}_model={model}" / ".hydra"
        record.mkdir(parents=True)
        (record / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
        (record / "overrides.yaml").write_text(f"- model={model}\n- trainer.accelerator=cpu\n")
        (record.parent / "job.json").write_text('{"status": "ok"}')
    kept = [(0, ["model=linear", "trainer.accelerator=gpu"]), (1, ["model=hidden", "trainer.accelerator=gpu"])]
    assert jobs_to_launch(tmp_path, kept, ["trainer.accelerator"]) == []  # continued on other hardware
    with pytest.raises(MnistlabError, match=r"holds job 1 of another sweep \(1_model=hidden\), where this one's job 1"):
        jobs_to_launch(tmp_path, [(0, ["model=linear"]), (1, ["model=cnn"])], ["trainer.accelerator"])
    (tmp_path / "1_model=hidden" / ".hydra" / "overrides.yaml").unlink()  # killed while Hydra wrote its record
    assert jobs_to_launch(tmp_path, [(1, ["model=cnn"])]) == [(1, ["model=cnn"])]


HOLD_SWEEP = """
import sys, time
from pathlib import Path
from mnistlab.run_folders import lock_run_folder
assert lock_run_folder(Path(sys.argv[1])) is None
print("held", flush=True)
time.sleep(120)
"""


def test_the_same_sweep_twice_at_once_is_refused(tmp_path: Path) -> None:
    """Before: the second launch took the first's running job 0 (no job.json, no last.ckpt yet) for a start
    that saved nothing, emptied its folder and trained into it beside it."""
    import subprocess
    import sys

    sweep_dir = tmp_path / "sweep"
    running = sweep_dir / "0_model=linear"  # the first launch's job 0, in its first epoch
    (running / ".hydra").mkdir(parents=True)
    (running / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: 0\n")
    (running / ".hydra" / "overrides.yaml").write_text("- model=linear\n- trainer.max_epochs=1\n")
    (running / "train.log").write_text("epoch 0 ...\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SWEEP, str(sweep_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = sweep(sweep_dir, "model=linear")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: hydra.sweep.dir={sweep_dir} is in use by another sweep that is still going: give a new folder"
    )
    assert (running / "train.log").read_text() == "epoch 0 ...\n"


def test_a_swept_placement_key_names_its_jobs_and_is_a_hparams_column(tmp_path: Path) -> None:
    """A learning curve over ``trainer.limit_train_batches``: placement keys are left out of job folder names and
    HParams, so both jobs were named ``N_model=linear,trainer.max_epochs=1`` with no column telling them apart."""
    sweep_dir = tmp_path / "sweep"
    command = ("-m", "model=linear", "trainer.max_epochs=1", "trainer.limit_train_batches=20,40",
               "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    result = run_script("train.py", *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert jobs == [
        "0_model=linear,trainer.limit_train_batches=20,trainer.max_epochs=1",
        "1_model=linear,trainer.limit_train_batches=40,trainer.max_epochs=1",
    ]
    for job, batches in zip(jobs, (20, 40), strict=True):
        assert yaml.safe_load((sweep_dir / job / "hparams.yaml").read_text())["trainer.limit_train_batches"] == batches
    events = EventAccumulator(str(sweep_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    assert "trainer.limit_train_batches" in {h.name for h in experiment.hparam_infos}
    again = run_script("train.py", *command, cwd=tmp_path)  # the same command continues it: both jobs are kept
    assert again.returncode == 0 and again.stdout.count(" kept: it finished in an earlier launch") == 2, again.stdout
