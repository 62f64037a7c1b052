"""The Optuna pruning callback stops a real training run whose val/acc is below the median."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest

from mnistlab.data import MNISTDataModule
from mnistlab.models import MLP
from mnistlab.sweeps.pruning import OptunaPruning
from mnistlab.systems import Classifier


def test_trial_below_the_median_is_pruned_after_reporting_its_epoch(tiny_data: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for _ in range(2):  # two finished trials that reached val/acc 1.0 at every epoch
        done = study.ask()
        for epoch in range(3):
            done.report(1.0, epoch)
        study.tell(done, 1.0)
    trial = study.ask()
    datamodule = MNISTDataModule(root=str(tiny_data), verify=False, val_size=20, batch_size=10, download=False)
    system = Classifier(MLP(hidden_units=0))
    callback = OptunaPruning(storage, "s", trial=trial.number, n_startup_trials=2)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        callbacks=[callback], num_sanity_val_steps=0,
    )  # fmt: skip
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        trainer.fit(system, datamodule=datamodule)
    reported = study.trials[trial.number].intermediate_values
    assert list(reported) == [0] and reported[0] < 1.0  # random pixels: far below the others
