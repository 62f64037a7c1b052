"""Reports each epoch's validation accuracy to an Optuna trial and stops the run when it is pruned."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl

if TYPE_CHECKING:  # imported when a job prunes: optuna is the [sweep] extra
    import optuna


class OptunaPruning(pl.Callback):
    """Median pruning on per-epoch ``val/acc``, for runs launched by the Optuna sweeper.

    The trial is found again through the study's storage (SQLite in the sweep folder), so
    this works whether the job runs in the sweeper's process, a joblib worker or a
    submitit job. Under DDP only rank 0 talks to the study; its decision is broadcast.

    Args:
        storage: Optuna storage URL of the study.
        study_name: Name of the study in that storage.
        trial: Trial number; None (a run outside the sweeper) disables the callback.
        monitor: Logged metric to report.
        n_startup_trials: Finished trials needed before any trial is pruned.
        n_warmup_steps: Epochs reported before this trial can be pruned.
    """

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial: int | None = None,
        monitor: str = "val/acc",
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
    ) -> None:
        self.storage, self.study_name, self.trial_number, self.monitor = storage, study_name, trial, monitor
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps
        self._trial: optuna.trial.Trial | None = None

    def _get_trial(self) -> optuna.trial.Trial:
        import optuna

        if self._trial is None:
            storage = optuna.storages.get_storage(self.storage)
            # The pruner is not stored with the study: this job's median pruner is built here.
            pruner = optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)
            study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=pruner)
            study_id = storage.get_study_id_from_name(self.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run before the module logs the epoch's val/acc there.
        if self.trial_number is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.is_global_zero:
            trial = self._get_trial()
            trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.current_epoch)
            prune = trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch} ({self.monitor} worse than the median)")
