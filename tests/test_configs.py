"""Every config group option composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning
import pytest
import torch
import yaml
from conftest import ROOT, compose_train, run_script, write_idx_set

from mnistlab.composition import compose
from mnistlab.errors import MnistlabError
from mnistlab.models import MLP
from mnistlab.systems import Classifier
from mnistlab.systems.metrics import FIT_METRICS

CONF = ROOT / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = (
    [f"model={m}" for m in options("model")]
    + [f"optimizer={o}" for o in options("optimizer")]
    + [f"scheduler={s}" for s in options("scheduler")]
    + [f"data/augment={a}" for a in options("data/augment")]
    + [f"logger={lg}" for lg in options("logger")]
    + [f"experiment={e}" for e in options("experiment")]
    + [f"data={d}" for d in options("data")]
    + [f"trainer={t}" for t in options("trainer")]
)


def untrained_checkpoint(path: Path) -> Path:
    """A checkpoint as training writes one, of an untrained linear network."""
    system = Classifier(MLP(hidden_units=0), net_config={"_target_": "mnistlab.models.MLP", "hidden_units": 0})
    ckpt = {"pytorch-lightning_version": lightning.__version__, "state_dict": system.state_dict()}
    torch.save({**ckpt, "hyper_parameters": dict(system.hparams)}, path)
    return path


@pytest.mark.parametrize("override", CASES)
def test_group_option_composes_and_builds_its_run(override: str, tmp_path: Path) -> None:
    if "mlflow" in override:
        pytest.importorskip("mlflow", reason='the [mlflow] extra is not installed (pip install -e ".[mlflow]")')
    cfg = compose_train([override, "callbacks.progress_bar.refresh_rate=0", "data.val_size=10"], tmp_path)
    write_idx_set(Path(cfg.data.root))
    cfg.data.verify = False  # hand-made files
    if cfg.system.get("teacher"):  # a preset that names a trained teacher: a real (untrained) checkpoint stands in
        cfg.system.teacher = str(untrained_checkpoint(tmp_path / "teacher.ckpt"))
    run = compose(cfg)  # config -> Trainer, system, data module, as scripts/train.py builds them
    assert run.datamodule.hparams.batch_size >= 1 and run.trainer.max_epochs >= 1
    if override.startswith("trainer="):
        strategy = "DDPStrategy" if override == "trainer=ddp" else "SingleDeviceStrategy"
        assert type(run.trainer.strategy).__name__ == strategy
    if override.split("=")[0] in ("model", "optimizer", "scheduler"):
        run.trainer.fit(run.system, datamodule=run.datamodule)  # 60 images: the pieces fit together
        assert run.trainer.global_step == cfg.trainer.max_epochs * -(-(60 - cfg.data.val_size) // cfg.data.batch_size)


def test_notebook_experiments_are_the_notebook_recipe(tmp_path: Path) -> None:
    for name, hidden_units in (("notebook_linear", 0), ("notebook_hidden", 100)):
        cfg = compose_train([f"experiment={name}"], tmp_path)
        assert (cfg.model.hidden_units, cfg.model.init, cfg.system.head) == (hidden_units, "keras", "sigmoid")
        assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
        assert (cfg.data.batch_size, cfg.data.val_size, cfg.trainer.max_epochs) == (32, 0, 5)


def test_best_hidden_keeps_the_notebook_network(tmp_path: Path) -> None:
    for data in ("mnist", "fashion_mnist"):
        cfg = compose_train(["experiment=best_hidden", f"data={data}"], tmp_path)
        assert (cfg.model.hidden_units, cfg.system.head) == (100, "softmax")
        assert cfg.data.augment._target_ == "mnistlab.data.augment.RandomAffine"
        # Chosen on validation: light augmentation helps MNIST and hurts Fashion-MNIST (identity there).
        assert bool(hydra.utils.instantiate(cfg.data.augment)) == (data == "mnist")
        assert cfg.data.dataset == data and cfg.data.val_size == 5000
        assert cfg.scheduler.max_lr == cfg.optimizer.lr
    default = compose_train([], tmp_path)
    assert "augment" not in default.data and default.get("scheduler") is None  # both off by default


def test_a_callback_or_logger_set_to_null_is_left_out(tmp_path: Path) -> None:
    nulls = ["callbacks.model_checkpoint=null", "callbacks.test_report=null", "logger.tensorboard=null"]
    cfg = compose_train([*nulls, "callbacks.progress_bar.refresh_rate=0", "data.val_size=10"], tmp_path)
    write_idx_set(Path(cfg.data.root))
    cfg.data.verify = False  # hand-made files
    run = compose(cfg)
    assert None not in run.trainer.callbacks and "NoneType" not in run.engine.reason and run.engine.chunk is not None
    assert run.trainer.loggers == []
    run.trainer.fit(run.system, datamodule=run.datamodule)  # 50 images: it failed at the first hook
    assert run.trainer.global_step == cfg.trainer.max_epochs * -(-50 // cfg.data.batch_size)


def test_enable_checkpointing_false_leaves_the_checkpoint_callbacks_out_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lightning.pytorch.callbacks import Checkpoint

    from mnistlab.resume.run import interrupted_hint, resume_files
    from mnistlab.training import fit_and_test

    overrides = ["+trainer.enable_checkpointing=false", "callbacks.progress_bar.refresh_rate=0", "data.val_size=10"]
    cfg = compose_train(overrides, tmp_path)
    write_idx_set(Path(cfg.data.root))
    cfg.data.verify = False  # hand-made files
    with caplog.at_level("INFO", logger="mnistlab.composition"):
        run = compose(cfg)  # Lightning refused the configured ModelCheckpoint here
    assert not any(isinstance(cb, Checkpoint) for cb in run.trainer.callbacks)
    assert [r.getMessage() for r in caplog.records if r.name == "mnistlab.composition"] == [
        "trainer.enable_checkpointing=false: callbacks model_checkpoint, last_checkpoint left out; no checkpoint, "
        "so resume= cannot continue this run"
    ]
    run_dir = Path(cfg.paths.output_dir)
    metrics = fit_and_test(run.trainer, run.system, run.datamodule, run_dir)  # tested on the final weights
    assert "test/acc" in metrics and "val/acc_best" not in metrics and not (run_dir / "checkpoints").exists()
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"trainer": {"enable_checkpointing": False}}))
    assert interrupted_hint(run_dir) == (
        "interrupted; trainer.enable_checkpointing=false saved no checkpoint: nothing to continue from"
    )
    with pytest.raises(MnistlabError, match=r"trainer\.enable_checkpointing=false and saved no checkpoint"):
        resume_files(run_dir)


def test_the_interrupted_line_of_a_run_in_a_folder_holding_equals_runs_as_printed(tmp_path: Path) -> None:
    """A run in a sweep job's folder (``train.py resume='"multirun/.../0_model=linear,seed=1"'``) stopped by a
    Ctrl-C printed ``resume=.../0_model=linear,seed=1``, which Hydra's grammar cannot read."""
    import shlex

    import torch
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnistlab.resume.run import interrupted_hint

    run_dir = tmp_path / "0_model=linear,seed=1"
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 0, "global_step": 860, "state_dict": {}}, run_dir / "checkpoints" / "last.ckpt")
    hint = interrupted_hint(run_dir)
    command = shlex.split(hint.split("continue with: ", 1)[1].split(" (", 1)[0])
    assert command[:2] == ["python", "scripts/train.py"]
    assert OverridesParser.create().parse_overrides(command[2:])[0].value() == str(run_dir)


def test_a_monitor_the_run_never_logs_is_refused_before_any_work(tmp_path: Path) -> None:
    # Lightning would find out after an epoch: EarlyStopping with a RuntimeError's traceback.
    es = ["+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.es.monitor=val/accc"]
    with pytest.raises(MnistlabError, match=r"es.monitor='val/accc' is not a metric the run logs; did you mean val"):
        compose(compose_train(es, tmp_path))
    with pytest.raises(MnistlabError, match=r"callbacks.model_checkpoint.monitor='train/los' is not a metric"):
        compose(compose_train(["callbacks.model_checkpoint.monitor=train/los"], tmp_path))
    # strict=False: Lightning documents a missing metric as no error; other namespaces are a callback's own.
    compose(compose_train([*es, "+callbacks.es.strict=false"], tmp_path))
    compose(compose_train([*es[:1], "+callbacks.es.monitor=mine/score"], tmp_path))
    # FIT_METRICS is what a fit logs.
    quick = ["callbacks.progress_bar.refresh_rate=0", "data.val_size=10", "trainer.max_epochs=1"]
    cfg = compose_train([*quick, "trainer.log_every_n_steps=1"], tmp_path)
    write_idx_set(Path(cfg.data.root))
    cfg.data.verify = False  # hand-made files
    run = compose(cfg)
    run.trainer.fit(run.system, datamodule=run.datamodule)
    assert sorted(run.trainer.callback_metrics) == sorted(FIT_METRICS)


def test_early_stopping_on_a_validation_metric_without_validation_is_refused_before_any_work(tmp_path: Path) -> None:
    # Lightning would train an epoch, then raise "Early stopping conditioned on metric `val/acc` which is not ...".
    es = ["experiment=notebook_hidden", "+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping"]
    with pytest.raises(MnistlabError, match=r"EarlyStopping\(monitor='val/acc'\) would never see its metric"):
        compose(compose_train([*es, "+callbacks.es.monitor=val/acc", "+callbacks.es.mode=max"], tmp_path))
    compose(compose_train([*es, "+callbacks.es.monitor=train/loss"], tmp_path))
    compose(compose_train(["experiment=notebook_hidden"], tmp_path))  # best.ckpt's val/acc: turned off, no error
    es[0] = "+trainer.limit_val_batches=0"  # the validation set is there, but no validation runs
    with pytest.raises(MnistlabError, match=r"would never see its metric: trainer.limit_val_batches=0 runs no valid"):
        compose(compose_train([*es, "+callbacks.es.monitor=val/loss"], tmp_path))


def test_early_stopping_on_an_accuracy_with_lightnings_default_mode_is_refused(tmp_path: Path) -> None:
    # EarlyStopping's mode defaults to min: on val/acc it stopped once the accuracy had not fallen for `patience`.
    es = ["+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.es.monitor=val/acc"]
    with pytest.raises(MnistlabError, match=r"^callbacks.es.mode=min ranks the lowest val/acc best"):
        compose(compose_train(es, tmp_path))
    compose(compose_train([*es, "+callbacks.es.mode=max"], tmp_path))


def test_early_stopping_after_every_epoch_on_a_validation_every_other_epoch_is_refused(tmp_path: Path) -> None:
    # Lightning would raise at epoch 0's end, which has no val/acc yet: "Early stopping conditioned on metric ...".
    es = ["trainer.check_val_every_n_epoch=2", "+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping",
          "+callbacks.es.monitor=val/acc", "+callbacks.es.mode=max"]  # fmt: skip
    with pytest.raises(MnistlabError, match=r"check_on_train_epoch_end=True\) checks after every training epoch"):
        compose(compose_train([*es, "+callbacks.es.check_on_train_epoch_end=true"], tmp_path))
    compose(compose_train(es, tmp_path))  # unset: Lightning checks after each validation


def test_a_tensorboard_writer_that_missed_its_wake_up_stops_within_seconds(tmp_path: Path) -> None:
    # A Ctrl-C that lands inside the queue of TensorBoard's writer thread can cost that thread its wake-up;
    # Lightning's shutdown then joined it until its next flush, 120 s by default, with Ctrl-C ignored
    # (seen: 'Detected KeyboardInterrupt' and two minutes of nothing). The lost wake-up, simulated here.
    import time

    from mnistlab.lightning_private import file_writer

    run = compose(compose_train(["trainer.max_epochs=1"], tmp_path, ROOT / "data"))
    worker = file_writer(run.trainer.logger.experiment).event_writer._async_writer._worker
    time.sleep(0.5)  # the thread has flushed once and waits for data or its next flush
    with worker._queue.mutex:  # the stop signal, queued without notifying the thread
        worker._queue.queue.append(worker._shutdown_signal)
        worker._queue.unfinished_tasks += 1
    worker.join(timeout=15)
    assert not worker.is_alive()


@pytest.mark.parametrize(
    ("setting", "refused"),
    [
        ("+trainer.min_epochs=-1", "trainer.min_epochs=-1 is out of range: must be an integer >= 0"),
        ("+trainer.min_steps=-5", "trainer.min_steps=-5 is out of range: must be an integer >= 0"),
        ("trainer.num_sanity_val_steps=-2", "trainer.num_sanity_val_steps=-2 is out of range: must be an integer >= -"),
    ],
)
def test_negative_counts_lightning_would_run_as_unset_are_refused(tmp_path: Path, setting: str, refused: str) -> None:
    """Lightning ran these as if unset, without a word; -1 sanity steps (all batches) and 0 stay allowed."""
    with pytest.raises(MnistlabError, match=refused.replace("+", r"\+")):
        compose(compose_train([setting], tmp_path))
    allowed = {"min_epochs": "0", "min_steps": "0", "num_sanity_val_steps": "-1"}
    key = setting.lstrip("+").split("=")[0]
    compose(compose_train([f"{setting.split('=')[0]}={allowed[key.split('.')[1]]}"], tmp_path))


def test_fast_dev_run_writes_no_report_and_says_it_was_a_smoke_test(tmp_path: Path, capsys) -> None:
    """Lightning's smoke test runs a batch or so "without side effects"; its accuracy is no run's result."""
    from mnistlab.training import fit_and_test

    cfg = compose_train(
        ["trainer.fast_dev_run=true", "callbacks.progress_bar.refresh_rate=0", "data.val_size=10"], tmp_path
    )
    write_idx_set(Path(cfg.data.root))
    cfg.data.verify = False  # hand-made files
    run = compose(cfg)
    run_dir = Path(cfg.paths.output_dir)
    metrics = fit_and_test(run.trainer, run.system, run.datamodule, run_dir)
    assert "test/acc" in metrics  # returned to the caller, as before
    written = sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []
    assert written == []  # no metrics.json, confusion_matrix.*, per_class.csv (sweeps and resume= read them)
    assert capsys.readouterr().out.strip().endswith("on a few batches, a smoke test: nothing written")


def test_train_py_under_fast_dev_run_leaves_no_folder(tmp_path: Path) -> None:
    """Its outputs/<date>/<time>/ held Hydra's records and train.log alone, under a line saying "nothing written"."""
    data = write_idx_set(tmp_path / "tiny", n_train=90, n_test=30)
    tiny = (
        f"data.root={data}",
        "data.download=false",
        "data.verify=false",
        "data.val_size=10",
        "callbacks.progress_bar.refresh_rate=0",
    )
    smoke = run_script("train.py", "trainer.fast_dev_run=true", *tiny, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert smoke.stdout.strip().endswith("on a few batches, a smoke test: nothing written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no outputs/


def test_a_monitor_of_the_step_loss_that_would_read_an_older_steps_loss_is_refused(tmp_path: Path) -> None:
    """train/loss_step is logged every log_every_n_steps (50) steps: read elsewhere it is an older step's loss."""
    es = ["+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.es.monitor=train/loss_step"]
    with pytest.raises(MnistlabError, match=r"callbacks.es.monitor='train/loss_step' is logged every trainer.log_"
                       r"every_n_steps=50 steps, so at an epoch's end it would hold an older step's loss"):  # fmt: skip
        compose(compose_train(es, tmp_path))
    steps = ["+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
             "+callbacks.steps.monitor=train/loss_step", f"+callbacks.steps.dirpath={tmp_path}/steps"]  # fmt: skip
    with pytest.raises(MnistlabError, match=r"so every 30 steps it would hold an older step's loss"):
        compose(compose_train([*steps, "+callbacks.steps.every_n_train_steps=30"], tmp_path))
    compose(compose_train([*steps, "+callbacks.steps.every_n_train_steps=100"], tmp_path))  # at logging steps: exact
    logged = ["+callbacks.steps.every_n_train_steps=30", "trainer.log_every_n_steps=10"]
    compose(compose_train([*steps, *logged], tmp_path))


def test_a_presets_setting_for_another_model_names_the_preset_and_the_fix(tmp_path: Path) -> None:
    """Before: ``error: model.channels=[16, 24] is not a setting of mnistlab.models.MLP; allowed keys: ...``, as if the
    user had typed the key: experiment=speedrun sets it for its own model=record_cnn."""
    from conftest import run_script

    run_dir = tmp_path / "run"
    result = run_script("train.py", "experiment=speedrun", "model=linear", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model.channels=[16, 24] (set by experiment=speedrun) is not a setting of mnistlab.models.MLP; allowed "
        "keys: hidden_units, num_classes, init; leave the model to experiment=speedrun (drop model=linear; it chooses "
        "model=record_cnn), or drop experiment=speedrun, or use a preset made for model=linear"
    )
    assert not run_dir.exists()  # before any work
