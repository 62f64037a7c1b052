"""Time to 99%: the speed record's network, the speedrun preset on real MNIST, time-to-target, the benchmark."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch
from conftest import compose_train, run_script, train, write_idx_set

from mnistlab.composition import compose
from mnistlab.engine.graph import network_blockers
from mnistlab.models import RecordCNN
from mnistlab.systems.schedules import one_cycle
from mnistlab.training import fit_and_test


def test_record_network_is_the_record_and_graph_safe() -> None:
    net = RecordCNN()
    assert sum(p.numel() for p in net.parameters()) == 215_194  # conv 1->24 5x5, conv 24->32 3x3, 800->256->10
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert network_blockers(RecordCNN(channels=(16, 24), hidden_units=128, channels_last=True)) == []


def test_channels_last_computes_the_same_logits() -> None:
    torch.manual_seed(0)
    nchw, nhwc = RecordCNN(), RecordCNN(channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())
    assert nhwc.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-5, atol=1e-5)


def test_one_cycle_without_momentum_cycling_keeps_the_betas() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01, betas=(0.7, 0.9))
    sched = one_cycle(opt, total_steps=20, max_lr=0.01, pct_start=0.3, cycle_momentum=False)
    for _ in range(20):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["betas"] == (0.7, 0.9)


def test_speedrun_record_is_the_record_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=speedrun_record"], tmp_path)
    assert (list(cfg.model.channels), cfg.model.hidden_units, cfg.model.channels_last) == ([24, 32], 256, False)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.01
    assert list(cfg.optimizer.betas) == [0.7, 0.9]
    assert (cfg.scheduler.max_lr, cfg.scheduler.pct_start, cfg.scheduler.cycle_momentum) == (0.01, 0.3, False)
    assert (cfg.data.batch_size, cfg.data.val_size, cfg.data.normalize, cfg.trainer.max_epochs) == (256, 0, True, 1)
    assert cfg.trainer.precision == "32-true" and cfg.system.label_smoothing == 0.0
    speedrun = compose_train(["experiment=speedrun"], tmp_path)
    assert speedrun.data.val_size == 0 and speedrun.trainer.max_epochs == 1  # all 60k images, one epoch


def _fit_tiny(tmp_path: Path, *overrides: str) -> tuple[dict[str, float], str]:
    """Two epochs of 5 steps on tiny random images (50 train, 10 val); returns the metrics and the engine."""
    root = write_idx_set(tmp_path / "tiny")
    cfg = compose_train(
        ["data.val_size=10", "data.batch_size=10", "data.verify=false", f"data.root={root}",
         "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0", "logger=csv", *overrides],
        tmp_path,
    )  # fmt: skip
    run = compose(cfg)
    return fit_and_test(run.trainer, run.system, run.datamodule, tmp_path / "run"), run.engine.name


def test_time_to_target_reports_the_first_validation_that_reached_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mnistlab"):
        metrics, engine = _fit_tiny(tmp_path, "callbacks.time_to_target.target=0.0")
    assert engine == "chunked"  # the callback keeps the fast engine
    assert metrics["time_to_target/target"] == 0.0
    assert metrics["time_to_target/step"] == 5  # the first validation: end of epoch 1
    assert 0 < metrics["time_to_target/seconds"] < metrics["fit_seconds"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["time_to_target/step"] == 5
    assert "time to target: val/acc" in caplog.text and "at step 5 (epoch 0)" in caplog.text
    logged = (next((tmp_path / "run").rglob("metrics.csv"))).read_text()
    assert "time_to_target/step" in logged.splitlines()[0]


def test_time_to_target_within_an_epoch_with_val_check_interval(tmp_path: Path) -> None:
    metrics, engine = _fit_tiny(tmp_path, "callbacks.time_to_target.target=0.0", "trainer.val_check_interval=2")
    assert engine == "per_step"  # Lightning's loop at every batch, as documented
    assert metrics["time_to_target/step"] == 2


def test_time_to_target_says_when_it_was_not_reached(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mnistlab"):
        metrics, _ = _fit_tiny(tmp_path, "callbacks.time_to_target.target=1.0")  # random labels: never all right
    assert metrics["time_to_target/target"] == 1.0
    assert "time_to_target/step" not in metrics and "time_to_target/seconds" not in metrics
    assert "time to target: val/acc did not reach 1.0 in 10 steps (best " in caplog.text


def test_time_to_target_is_off_by_default(tmp_path: Path) -> None:
    metrics, engine = _fit_tiny(tmp_path)
    assert engine == "chunked" and not any(k.startswith("time_to_target") for k in metrics)


@pytest.mark.slow
def test_speedrun_preset_reaches_99_percent_on_one_seed(tmp_path: Path) -> None:
    """The preset was chosen on a 55k/5k validation split; here one seed is checked on the test set."""
    run = train(tmp_path / "run", "experiment=speedrun")
    assert run.metrics["epochs"] == 1
    assert run.metrics["test/acc"] >= 0.99, run.metrics


@pytest.mark.slow
def test_speedrun_benchmark_runs_a_few_steps(tmp_path: Path) -> None:
    out = tmp_path / "speedrun.json"
    result = run_script(
        "../benchmarks/speedrun.py", "seeds=2", "steps=3", "warmup_steps=1", f"json={out}",
        "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| seed | (r) s | (r) acc | (m) s | (m) acc | (mr) s | (mr) acc |" in result.stdout
    assert "(m) / (r): " in result.stdout and "(mr) / (r): " in result.stdout
    report = json.loads(out.read_text())
    assert sorted(report["seeds"]) == ["1", "2"] and report["device"] == "cpu"
    for row in report["seeds"].values():
        assert sorted(row) == ["(m)", "(mr)", "(r)"]
        assert all(v["seconds"] > 0 and 0 <= v["test_acc"] <= 1 for v in row.values())
    # (m) and (mr) went through scripts/train.py's path: compose, fit, test, metrics.json in their own folders.
    for name in ("m", "mr"):
        assert json.loads((tmp_path / "run" / name / "2" / "metrics.json").read_text())["epochs"] == 1


def test_time_to_target_refuses_a_loss_or_an_unlogged_monitor() -> None:
    """Before: ``monitor=val/loss`` "reached" 0.9 at the first validation (a loss of 1.4 is >= 0.9), and a
    misspelled monitor was never read and said "no validation ran"."""
    from mnistlab.callbacks import TimeToTarget
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match="a target is reached by rising to it, and a loss falls"):
        TimeToTarget(0.9, monitor="val/loss")
    with pytest.raises(ConfigError, match="val/accc is not a metric the run logs; did you mean val/acc"):
        TimeToTarget(0.9, monitor="val/accc")
    TimeToTarget(0.9, monitor="train/acc")
    TimeToTarget(None, monitor="val/loss")  # off: nothing is watched


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["experiment=speedrun"], "this run holds out no validation set (data.val_size=0)"),
        (["data.val_size=5000", "+trainer.limit_val_batches=0"], "trainer.limit_val_batches=0 runs no validation"),
        (
            ["trainer.check_val_every_n_epoch=3", "trainer.max_epochs=2"],
            "trainer.check_val_every_n_epoch=3 validates first after epoch 3, past trainer.max_epochs=2",
        ),
    ],
)
def test_a_time_target_without_validation_is_refused_before_any_work(
    overrides: list[str], why: str, tmp_path: Path
) -> None:
    """Before: the whole run trained, then said 'did not reach 0.99 ... (no validation ran)'."""
    from mnistlab.errors import ConfigError

    cfg = compose_train([*overrides, "callbacks.time_to_target.target=0.5"], tmp_path)
    with pytest.raises(ConfigError, match=re.escape("looked for at validations only, and " + why)):
        compose(cfg)


def test_time_to_target_refuses_a_test_metric() -> None:
    """Before: ``monitor=test/acc`` was accepted and never read (the test comes after training)."""
    from mnistlab.callbacks import TimeToTarget
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match="the test logs it after training"):
        TimeToTarget(0.9, monitor="test/acc")


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        ("val_acc", "val_acc is not a metric the run logs; did you mean val/acc? (watch val/acc or train/acc)"),
        ("accuracy", "accuracy is not a metric the run logs (watch val/acc or train/acc)"),
        ("train/loss_step", "a target is reached by rising to it, and a loss falls"),
    ],
)
def test_time_to_target_refuses_a_monitor_outside_the_runs_accuracies(monitor: str, message: str) -> None:
    """Before: ``monitor=val_acc`` (Keras' name) trained the whole run, then said ``val_acc did not reach 0.9 in
    100 steps (no validation ran)``, though every validation had run; ``train/loss_step`` "reached" 0.9 at once."""
    from mnistlab.callbacks import TimeToTarget
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        TimeToTarget(0.9, monitor=monitor)


def test_time_to_target_on_train_acc_is_the_epoch_it_was_reached(tmp_path: Path) -> None:
    """Before: train/acc was read at validations, where it is still the previous epoch's (the system logs it after
    the epoch's validation): epoch 0's value was reported at epoch 1's step, and a run without validation never
    read it and said 'did not reach'. Now it is stamped at its own epoch's end, and in that epoch's last.ckpt."""
    metrics, _ = _fit_tiny(
        tmp_path, "callbacks.time_to_target.target=0.0", "callbacks.time_to_target.monitor=train/acc"
    )
    assert metrics["time_to_target/step"] == 5  # the end of epoch 0, 5 steps an epoch
    one_epoch = tmp_path / "one"
    one_epoch.mkdir()
    cfg = compose_train(
        ["data.val_size=0", "data.batch_size=10", "data.verify=false", f"data.root={tmp_path / 'tiny'}",
         "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", "logger=csv",
         "callbacks.time_to_target.target=0.0",
         "callbacks.time_to_target.monitor=train/acc"],
        one_epoch,
    )  # fmt: skip
    run = compose(cfg)  # no validation: a train/ target is still read
    metrics = fit_and_test(run.trainer, run.system, run.datamodule, one_epoch / "run")
    assert metrics["time_to_target/step"] == 6  # 60 images at batch 10, no validation split
    saved = torch.load(one_epoch / "run" / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert [best[:2] for best in saved["TimeToTarget"]["bests"]] == [[6, 0]]  # saved at that epoch's end
