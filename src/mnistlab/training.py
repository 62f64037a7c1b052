"""Fit, test and record one run: the plain function behind ``scripts/train.py``, and its launch from a config."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from mnistlab.atomic_files import write_atomic, write_metrics
from mnistlab.callbacks import JobProgress, LastCheckpoint, TimeToTarget
from mnistlab.checkpoints import read_checkpoint
from mnistlab.composition import Run, compose
from mnistlab.config_checks import check_ckpt_path, check_cv, check_search
from mnistlab.data import MNISTDataModule
from mnistlab.hparams import SUMMARY_METRICS, log_hparams, run_hparams
from mnistlab.monitor_checks import check_given_checkpoint_monitor
from mnistlab.process.jobs import started_by_lightning_ddp
from mnistlab.resume.checkpoint import check_continuable, finished_epochs
from mnistlab.resume.loggers import mark_restart
from mnistlab.resume.run import continued_config, launch_record
from mnistlab.run_folders import discard_run_dir
from mnistlab.systems import Classifier
from mnistlab.tb_writers import tensorboard_write_errors
from mnistlab.teachers import check_teacher_settings


def _refresh_hparams_file(logger: Any) -> None:
    """A resumed run's ``hparams.yaml`` holds this launch's record (e.g. a larger ``trainer.max_epochs``).

    ``TensorBoardLogger`` writes the file only where there is none, so it kept the first launch's.
    """
    if isinstance(logger, TensorBoardLogger) and (path := Path(logger.log_dir) / logger.NAME_HPARAMS_FILE).is_file():
        write_atomic(path, yaml.safe_dump(dict(logger.hparams), sort_keys=False).encode())


def log_best_scores(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Logs ``val/acc_best`` (or ``val/loss_best``) to the loggers other than TensorBoard, at the final step.

    TensorBoard gets it with its HParams record (``log_hparams``); CSV's ``metrics.csv`` and MLflow's run
    would otherwise lack the score a sweep ranks its jobs by. Their loggers were finalized by the test: saved again.
    """
    values = {k: v for k, v in metrics.items() if k in SUMMARY_METRICS and not k.startswith("test/")}
    for logger in trainer.loggers:
        if values and not isinstance(logger, TensorBoardLogger):
            logger.log_metrics(values, trainer.global_step)
            logger.save()


def best_score(callback: ModelCheckpoint) -> float:
    """The monitored value of ``callback``'s best checkpoint.

    Under ``ddp_spawn`` the fit runs in child processes, and Lightning hands the main process the best
    checkpoint's path but not its score: it is read from the checkpoint then.
    """
    if callback.best_model_score is None:
        state = read_checkpoint(callback.best_model_path)["callbacks"][callback.state_key]
        return float(state["best_model_score"])
    return float(callback.best_model_score)


def ranks_by_validation(callback: pl.Callback) -> bool:
    """Whether ``callback`` is a ``ModelCheckpoint`` keeping the best by a validation metric (``val/...``)."""
    return isinstance(callback, ModelCheckpoint) and str(callback.monitor or "").startswith("val/")


def epochs_done(trainer: pl.Trainer) -> int:
    """``trainer.current_epoch`` after a fit; ``last.ckpt``'s under ``ddp_spawn``, whose main process counts nothing."""
    last = next((cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
    if trainer.current_epoch == 0 and last is not None and last.path.is_file():
        return finished_epochs(read_checkpoint(last.path))
    return int(trainer.current_epoch)


def fit_and_test(
    trainer: pl.Trainer,
    system: Classifier,
    datamodule: MNISTDataModule,
    output_dir: Path,
    ckpt_path: str | None = None,
    hparams: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    columns: bool = True,
) -> dict[str, float]:
    """Trains, tests on the official test set and writes ``metrics.json`` into ``output_dir``.

    ``metrics.json`` extends the one a ``TestReport`` callback wrote during the test with the
    fit's own numbers.

    The test uses the best checkpoint by ``val/acc`` when there is validation, and the
    final weights otherwise (``data.val_size=0``, the notebook's recipe).

    ``hparams`` (the short record of ``mnistlab.hparams.run_hparams``) goes to every logger:
    TensorBoard's HParams tab gets it at the end with the final metrics, the others (MLflow's
    params, CSV's ``hparams.yaml``) before the fit. ``config`` is the full composed config. ``columns``:
    see ``log_hparams`` (False for a sweep's job).

    Returns:
        ``test/acc``, ``test/loss``, the best checkpoint's score as ``<monitor>_best`` (``val/acc_best``, or
        ``val/loss_best`` for a checkpoint kept by ``val/loss``), ``epochs``, ``fit_seconds`` (this launch's)
        and, with a ``TimeToTarget`` callback on, ``time_to_target/target``, ``/step`` and ``/seconds``; a resumed
        run's ``fit_seconds_earlier``, the training time of its earlier launches up to the checkpoint it took up.
    """
    checkpoints = [cb for cb in trainer.callbacks if ranks_by_validation(cb)]
    if not datamodule.has_validation:
        for cb in checkpoints:
            # No val/acc to rank by: no best.ckpt; last.ckpt (LastCheckpoint) holds the final weights.
            # Only these: a checkpoint every N steps or epochs, or by a training metric, saves as Lightning says.
            cb.monitor, cb.save_top_k = None, 0
    if trainer.local_rank == 0:  # as Lightning would in fit: missing files fetched, wrong ones refused,
        datamodule.prepare_data()  # but before a logger records the run (MLflow's run, CSV's hparams.yaml)
    with tensorboard_write_errors(trainer):  # TensorBoard's writer thread names no file: named here
        for logger in trainer.loggers:
            # TensorBoard (default_hp_metric=false) only keeps them for its hparams.yaml here; its HParams tab
            # gets them with the final metrics from log_hparams. The others record them now.
            if hparams:
                logger.log_hyperparams(hparams)
                if trainer.is_global_zero:  # the other ranks' loggers hold no record: they would write {}
                    _refresh_hparams_file(logger)
        start = time.perf_counter()
        # Loads go through SafeCheckpointIO (weights_only=True) whatever this says; say it anyway.
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - start
        # Read before the test, whose ckpt_path loads the best checkpoint's callback states: the time and the
        # bests as the fit ended, not as that checkpoint saw them (a target reached after the best is kept).
        timers = [cb for cb in trainer.callbacks if isinstance(cb, TimeToTarget)]
        earlier = timers[0].earlier_seconds if timers else 0.0
        reached = {k: v for cb in timers for k, v in cb.summary().items()}
        best = next((cb for cb in checkpoints if cb.monitor and cb.best_model_path), None)
        results = trainer.test(
            system,
            datamodule=datamodule,
            ckpt_path=best.best_model_path if best else None,
            verbose=False,
            weights_only=True,
        )
        metrics: dict[str, float] = {
            **{k: float(v) for k, v in results[0].items() if k.startswith("test/")},  # acc, loss, macro P/R/F1
            "epochs": epochs_done(trainer),
            "fit_seconds": round(fit_seconds, 2),
        }
        if best is not None:
            # Named by what it is: a val/loss recorded as val/acc_best would rank the worst run first.
            metrics[f"{best.monitor}_best"] = best_score(best)
        metrics.update(reached)
        if earlier:  # resumed: fit_seconds is this launch's; the sweep summary adds these
            metrics["fit_seconds_earlier"] = round(earlier, 2)
        if trainer.fast_dev_run and trainer.is_global_zero:  # Lightning's smoke test: its few batches are no result
            print(f"fast_dev_run: test/acc {metrics['test/acc']:.4f} on a few batches, a smoke test: nothing written")
            discard_run_dir()  # the folder Hydra made for it, its records alone (a sweep's job folders stay)
        elif trainer.is_global_zero:
            write_metrics(output_dir, metrics)
            log_best_scores(trainer, metrics)
            log_hparams(trainer, hparams or {}, metrics, config, columns)
            print(f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  ({output_dir})")
        return metrics


def checked_run(
    cfg: DictConfig, overrides: Sequence[str], in_sweep: bool, callbacks: Sequence[pl.Callback] = ()
) -> tuple[DictConfig, Run]:
    """A job's checks, in their order, and its composition: all that comes before any data is read.

    ``train`` runs them, and a sweep runs them on its first job before launching any
    (``mnistlab.sweeps.shared_refusal``), so a check added here guards both.

    Args:
        cfg: The job's composed ``conf/train.yaml``.
        overrides: Its command-line overrides (Hydra's ``overrides.task``).
        in_sweep: Whether it is a job of a multirun sweep (or a DDP rank re-running one).
        callbacks: Callback objects to add to the config's.

    Returns:
        The config as continued (``resume=RUN_DIR`` or ``ckpt_path=...``) and the built run.
    """
    check_cv(cfg.get("cv"), in_sweep)
    check_search(overrides, in_sweep)
    check_ckpt_path(cfg.get("ckpt_path"))
    cfg = continued_config(cfg, overrides)  # resume=RUN_DIR or ckpt_path=...
    run = compose(cfg, callbacks=callbacks)
    check_given_checkpoint_monitor(overrides, run.datamodule.has_validation)
    check_teacher_settings(overrides, cfg.system.get("teacher"))  # after compose: a value out of range comes first
    if cfg.ckpt_path and not cfg.resume:  # a new run from a checkpoint: one it cannot take up is refused
        check_continuable(run.system, cfg.ckpt_path)
    return cfg, run


def train(cfg: DictConfig, overrides: Sequence[str], job_num: int | None) -> float:
    """The run of ``scripts/train.py``: ``cfg`` checked, continued, composed, fitted, tested and recorded.

    Args:
        cfg: This job's composed ``conf/train.yaml``.
        overrides: Its command-line overrides (Hydra's ``overrides.task``).
        job_num: Its number in a multirun sweep; None for a single run.

    Returns:
        The run's ``test/acc``.
    """
    # cv=K is a sweep of K folds; a DDP rank started by Lightning re-runs one job of it (torchrun's run the command).
    in_sweep = job_num is not None or started_by_lightning_ddp()
    # A sweep's job writes into its log; its progress, a line every 30 s, goes to the sweep's console.
    # Not in a DDP rank that Lightning started: it re-runs the job outside the sweep, without its number.
    progress = [JobProgress(job_num, sys.__stdout__)] if job_num is not None and sys.__stdout__ else []
    cfg, run = checked_run(cfg, overrides, in_sweep, progress)
    config = OmegaConf.to_container(cfg, resolve=True)
    mark_restart(run.trainer, cfg.ckpt_path)
    metrics = fit_and_test(
        run.trainer,
        run.system,
        run.datamodule,
        Path(cfg.paths.output_dir),
        ckpt_path=cfg.ckpt_path,
        hparams=run_hparams(config, *launch_record(cfg)),
        config=config,
        columns=not in_sweep,  # a sweep's HParams columns are the sweep's, written when it ends
    )
    return metrics["test/acc"]
