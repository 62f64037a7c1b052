"""What TensorBoard and the other loggers show of a run: each picture beside its scalars, the best validation score."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from conftest import run_script, train, write_idx_set
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from test_chaos import sweep as chaos_sweep

# 390 training images in batches of 10: 39 optimizer steps an epoch.
TINY = ("model=linear", "data.download=false", "data.verify=false", "data.val_size=10", "data.batch_size=10")


def test_the_confusion_matrices_sit_at_the_steps_of_their_stage_scalars(tmp_path: Path) -> None:
    """The val matrix was drawn at trainer.global_step, one past the step Lightning logs val/acc at: in
    TensorBoard the image slider and the curves named different steps for the same validation."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run = train(tmp_path / "run", *TINY, f"data.root={data}", "trainer.max_epochs=2")
    events = EventAccumulator(str(run.dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    for stage in ("val", "test"):
        images = [e.step for e in events.Images(f"{stage}/confusion_matrix")]
        assert images == [e.step for e in events.Scalars(f"{stage}/acc")], stage
    assert [e.step for e in events.Images("val/confusion_matrix")] == [38, 77]


def test_the_csv_logger_gets_the_best_validation_score_tensorboard_gets(tmp_path: Path) -> None:
    """val/acc_best, which a sweep ranks its jobs by, went to TensorBoard alone: metrics.csv (and MLflow's run,
    through the same logger call) had no column for it."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run = train(tmp_path / "run", *TINY, f"data.root={data}", "trainer.max_epochs=1", "logger=csv")
    with (run.dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/acc_best")]
    assert [(int(row["step"]), float(row["val/acc_best"])) for row in rows] == [(39, run.metrics["val/acc_best"])]


def logged(run_dir: Path) -> list[tuple[str, int, object]]:
    """(tag, step, value) of every summary in the folder's event files, as any TensorBoard reader gets them."""
    return [
        (value.tag, event.step, value)
        for path in sorted(run_dir.glob("events.out.tfevents.*"))
        for event in LegacyEventFileLoader(str(path)).Load()
        for value in event.summary.value
    ]


def test_a_new_run_from_another_runs_checkpoint_shows_its_training_samples(tmp_path: Path) -> None:
    """train/samples was skipped wherever global_step > 0 (meant for resume=, whose first launch logged it), so a
    ckpt_path= run, in a folder of its own, had no training samples at all."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    first = train(tmp_path / "first", *TINY, f"data.root={data}", "trainer.max_epochs=1")
    second = train(tmp_path / "second", *TINY, f"data.root={data}", "trainer.max_epochs=2", f"ckpt_path={first.dir}")
    resumed = run_script("train.py", f"resume={first.dir}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [step for tag, step, _ in logged(second.dir) if tag == "train/samples"] == [0]
    assert [step for tag, step, _ in logged(first.dir) if tag == "train/samples"] == [0]  # not again on resume


def hparams_record(run_dir: Path) -> dict[str, object]:
    """The HParams tab's record of a run: its session start info, as TensorBoard's hparams plugin reads it."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run_dir))
    events.Reload()
    records = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in events.PluginTagToContent("hparams").values()]
    [start] = [r.session_start_info for r in records if r.HasField("session_start_info")]
    return {k: v.string_value or v.number_value for k, v in start.hparams.items()}


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_an_ensemble_and_an_evaluation_sit_beside_the_runs_they_tested(tmp_path: Path) -> None:
    """A cv sweep's ensemble and evaluate.py's report had an empty hparams.yaml, no HParams record and their
    test/* scalars at step 0, far left of the training runs' test points at their last step."""
    data = write_idx_set(tmp_path / "tiny", n_train=90, n_test=30)
    sweep = tmp_path / "sweep"
    tiny = ("data.download=false", "data.verify=false", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")
    result = run_script(
        "train.py", "-m", "cv=2", "model=linear", f"data.root={data}", *tiny, f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folds = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    [trained_step] = {step for fold in folds for step in scalar_steps(fold, "test/acc")}
    ensemble = sweep / "ensembles" / "0"
    assert scalar_steps(ensemble, "test/acc") == [trained_step]
    record = hparams_record(ensemble)
    assert record["members"] == 2 and record["model"] == "linear" and record["cv"] == 2
    assert "data.fold" not in record and "seed" not in record  # each fold's own: no setting of the ensemble
    assert yaml.safe_load((ensemble / "hparams.yaml").read_text())["members"] == 2
    evaluated = run_script("evaluate.py", f"ckpt_path='{folds[0] / 'checkpoints' / 'last.ckpt'}'", f"data.root={data}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    [report] = (folds[0] / "eval").iterdir()
    assert scalar_steps(report, "test/acc") == [trained_step]
    texts = EventAccumulator(str(report)).Reload().Tensors("test/report/text_summary")
    assert [e.step for e in texts] == [trained_step]
    record = hparams_record(report)
    assert record["checkpoint"] == "last.ckpt" and record["members"] == 1 and record["data.fold"] == 0


def hparams_tab(logdir: Path) -> tuple[list[str], list[str]]:
    """The columns TensorBoard's HParams tab shows for ``tensorboard --logdir logdir``, from its own backend:
    the hyperparameters' and the metrics'."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    runs = plugin_event_multiplexer.EventMultiplexer()
    runs.AddRunsFromDirectory(str(logdir))
    runs.Reload()
    provider = data_provider.MultiplexerDataProvider(runs, str(logdir))
    tab = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=runs, data_provider=provider))
    ctx = context.RequestContext()
    experiment = tab.experiment_from_metadata(ctx, "", True, tab.hparams_metadata(ctx, ""), None)
    return [h.name for h in experiment.hparam_infos], [m.name.tag for m in experiment.metric_infos]


def test_every_job_of_a_sweep_shows_under_the_same_hparams_columns(tmp_path: Path) -> None:
    """Each job wrote its own HParams experiment, and TensorBoard took one job's as the tab's columns: an adam
    job's had no optimizer.momentum, so the sgd jobs' momentum never showed."""
    data = write_idx_set(tmp_path / "tiny", n_train=90, n_test=30)
    sweep = tmp_path / "sweep"
    tiny = ("data.download=false", "data.verify=false", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")
    result = run_script(
        "train.py",
        "-m",
        "optimizer=adam,sgd",
        "model=linear",
        "data.val_size=10",
        f"data.root={data}",
        *tiny,
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [yaml.safe_load(path.read_text()) for path in sorted(sweep.glob("*/hparams.yaml"))]
    assert "optimizer.momentum" not in records[0] and "optimizer.momentum" in records[1]  # adam's, sgd's
    columns, _ = hparams_tab(sweep)
    assert set(columns) == set(records[0]) | set(records[1])


def test_an_interrupted_sweep_shows_its_finished_jobs_under_the_sweeps_hparams_columns(tmp_path: Path) -> None:
    """The sweep wrote its HParams columns only when it ended: after a Ctrl-C or a SIGTERM its folder had none, and
    TensorBoard made up its own from the finished jobs, with every scalar they logged as a metric column, until a
    continued sweep completed. Each launch now writes them, over the earlier launch's."""
    data = write_idx_set(tmp_path / "tiny", n_train=300, n_test=40)
    sweep = tmp_path / "sweep"
    jobs = ("model=linear", "data.batch_size=32", "callbacks.last_checkpoint.every_n_steps=3", "optimizer=adam,sgd")
    written = []
    # Ctrl-C in job 1 (sgd) after job 0 (adam) finished; SIGTERM in job 1 again, continued; the last launch completes.
    for kill, signal_name, status in (("step:1:4", "INT", 1), ("step:1:2", "TERM", 143), (None, "KILL", 0)):
        result = chaos_sweep(sweep, data, kill=kill, jobs=jobs, signal_name=signal_name)
        assert result.returncode == status, result.stderr[-3000:]
        events = list(sweep.glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].name not in written  # the earlier launch's replaced
        written.append(events[0].name)
        columns, metrics = hparams_tab(sweep)
        assert metrics == ["test/acc", "test/loss", "val/acc_best"]  # the sweep's, not every scalar of job 0
        records = [yaml.safe_load(path.read_text()) for path in sorted(sweep.glob("*/hparams.yaml"))]
        assert set(columns) == set(records[0]) | set(records[1]) and "optimizer.momentum" in records[1]


def test_a_resumed_run_shows_each_step_once_to_a_reader_that_ignores_the_restart_marker(tmp_path: Path) -> None:
    """TensorBoard's data server ignores purge_step: the points a killed process logged after its checkpoint
    showed beside the resumed run's points for the same steps. Simulated here by resuming from an earlier
    last.ckpt of a run that had logged one more epoch."""
    data = write_idx_set(tmp_path / "tiny", n_train=400)
    run = train(tmp_path / "run", *TINY, f"data.root={data}", "trainer.max_epochs=1")
    epoch_one = (run.dir / "checkpoints" / "last.ckpt").read_bytes()
    for _ in range(2):  # the second launch resumes epoch 1's checkpoint again: epoch 2's points are there already
        (run.dir / "checkpoints" / "last.ckpt").write_bytes(epoch_one)
        resumed = run_script("train.py", f"resume={run.dir}", "trainer.max_epochs=2")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    points = [(tag, step) for tag, step, _ in logged(run.dir) if tag in ("train/loss_step", "train/loss", "val/acc")]
    assert sorted(points) == sorted(set(points)) and ("train/loss", 77) in points
    assert len(list(run.dir.glob("events.out.tfevents.*"))) >= 3  # every file kept
