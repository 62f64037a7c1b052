"""LR schedules sized from the run's own step count, and the scheduler group wired through train.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import run_script, write_idx_set

from mnistlab.systems.schedules import cosine, one_cycle


def test_one_cycle_runs_exactly_the_whole_training() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = one_cycle(opt, total_steps=110, max_lr=3e-3)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])  # the rate this optimizer step uses
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(3e-3, rel=1e-2) and lrs[-1] == pytest.approx(3e-3 / 25 / 1e4)
    with pytest.raises(ValueError):  # OneCycleLR refuses to run past its total
        sched.step()


def test_cosine_decays_to_eta_min() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = cosine(opt, total_steps=100, eta_min=0.001)
    for _ in range(100):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_train_script_steps_the_scheduler(tmp_path: Path) -> None:
    root = write_idx_set(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        f"data.root={root}",
        "data.verify=false",
        "data.val_size=0",  # no monitor: last.ckpt is written after every epoch
        "data.batch_size=8",
        "scheduler=one_cycle",
        "trainer.max_epochs=2",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["scheduler"]["target"].endswith("schedules.one_cycle")
    (state,) = ckpt["lr_schedulers"]
    assert state["last_epoch"] == state["total_steps"] == 2 * 8  # every optimizer step of 2 x 60/8 batches, no overrun


def test_the_system_refuses_what_torch_refuses_before_any_work() -> None:
    from functools import partial

    from mnistlab.errors import ConfigError
    from mnistlab.models import MLP
    from mnistlab.systems import Classifier

    with pytest.raises(ConfigError, match=r"^optimizer: SGD refused its settings: Invalid momentum value: -0.5$"):
        Classifier(MLP(), optimizer=partial(torch.optim.SGD, lr=0.1, momentum=-0.5))
    with pytest.raises(ConfigError, match=r"^scheduler: cosine refused its settings: eta_min=-1 must be >= 0$"):
        Classifier(MLP(), scheduler=partial(cosine, eta_min=-1))
    system = Classifier(MLP(), scheduler=partial(one_cycle, max_lr=1e-3))  # accepted settings build as before
    assert system.hparams.scheduler["target"] == "mnistlab.systems.schedules.one_cycle"


def test_a_torch_scheduler_is_told_what_the_system_calls_it_with() -> None:
    """Before: only torch's ``unexpected keyword argument 'total_steps'``, which the user never passed."""
    from functools import partial

    from mnistlab.errors import ConfigError
    from mnistlab.models import MLP
    from mnistlab.systems import Classifier

    step_lr = partial(torch.optim.lr_scheduler.StepLR, step_size=5)
    with pytest.raises(ConfigError, match=re.escape("'total_steps' (a scheduler is called as scheduler(optimizer, ")):
        Classifier(MLP(), scheduler=step_lr)


def test_a_python_trainer_of_open_length_refuses_the_schedule_in_one_line(tmp_path: Path) -> None:
    """Before: ``OverflowError: cannot convert float infinity to integer`` inside ``configure_optimizers``; only
    ``scripts/train.py``'s compose refused the setting (docs/errors.md, ``schedule-open-ended``)."""
    from functools import partial

    import lightning.pytorch as pl

    from mnistlab.data import MNISTDataModule
    from mnistlab.errors import ConfigError
    from mnistlab.models import MLP
    from mnistlab.systems import Classifier

    root = write_idx_set(tmp_path / "tiny")
    dm = MNISTDataModule(str(root), download=False, verify=False, val_size=10, batch_size=10)
    system = Classifier(MLP(hidden_units=8), scheduler=partial(one_cycle, max_lr=1e-3))
    trainer = pl.Trainer(max_epochs=-1, max_time={"seconds": 5}, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    message = (
        "a scheduler sizes its schedule from the run's steps, which trainer.max_epochs=-1 without trainer.max_steps "
        "leaves open: set trainer.max_steps, or drop the scheduler"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        trainer.fit(system, datamodule=dm)
    assert system.global_step == 0  # refused before the first step
