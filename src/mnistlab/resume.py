"""Continuing a run, start to end: ``resume=RUN_DIR`` (the same run, in its folder) and ``ckpt_path=...`` (a new run).

The steps, in the order a continued run takes them:

1. Its folder: ``conf/hydra/train.yaml`` sets ``hydra.run.dir`` and ``hydra.output_subdir`` with
   ``resume_run_dir`` / ``resume_record_dir``: ``resume=RUN_DIR`` runs in ``RUN_DIR``, with
   Hydra's record of the resuming launch in ``.hydra/resume`` beside the first's.
2. Its config (``continued_config``): the saved config of the run, with only ``RESUMABLE``
   overrides applied (``mnistlab.config_keys.PRESENTATION`` passed over, any other refused), set
   to continue from ``checkpoints/last.ckpt``; or, for ``ckpt_path=``,
   the checkpoint a folder stands for, refused when it has already trained ``trainer.max_epochs``.
3. Its record (``launch_record``): the hyperparameters a resumed run reports are its first launch's.
4. TensorBoard (``mark_restart``): steps logged after the checkpoint by the killed process are
   dropped, so every step appears once.
5. The state: ``trainer.fit(ckpt_path=...)`` restores weights, optimizer, loops and the training
   loader's position (read through ``mnistlab.checkpoints.SafeCheckpointIO``, ``weights_only=True``).
   The engine's own part lives with the engine: ``Classifier.on_train_start`` hands the loader its
   saved position, ``mnistlab.data.loaders.TrainBatches.state_dict`` is that position.
6. MLflow: ``conf/logger/mlflow.yaml`` passes ``resume`` to ``mnistlab.mlflow_logger.MLflowLogger``,
   which continues the run saved in the folder's ``mlflow_run.json``.

A sweep continues the same way, job by job (``jobs_to_launch``): the same ``-m`` command with the same
``hydra.sweep.dir`` keeps the finished jobs, launches each interrupted job with ``resume=<its folder>``
(steps 1 to 6, in its own folder) and runs the jobs that never started.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.config_keys import PRESENTATION, override_key
from mnistlab.errors import MnistlabError

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from mnistlab.systems import Classifier

log = logging.getLogger(__name__)

# What may change when a run continues: how long it trains and where. Anything else would make the
# continued run a different experiment in the same folder.
RESUMABLE = ("trainer.max_epochs", "trainer.accelerator", "trainer.devices", "callbacks.time_to_target.target")
RECORD_DIR, RESUME_RECORD_DIR = ".hydra", ".hydra/resume"
# A sweep job's outcome in its job.json (mnistlab.sweeps.summary.JOB_FILE) that a continued sweep keeps.
FINISHED = ("ok", "pruned")


def resume_run_dir(resume: str | None, root: str) -> str:
    """Resolver ``${mnistlab.resume_run_dir:${resume},ROOT}``: the resumed run's folder, else a new one in ``ROOT``."""
    from mnistlab.run_folders import new_folder

    return new_folder(root) if resume is None else str(resume)


def resume_record_dir(resume: str | None) -> str:
    """Resolver ``${mnistlab.resume_record_dir:${resume}}``: where Hydra records this launch."""
    return RECORD_DIR if resume is None else RESUME_RECORD_DIR


def run_folder_mistake(cfg: DictConfig, run_dir: Path, existed: bool) -> str | None:
    """What is wrong with the folder a ``train.py`` run is about to write into, asked before Hydra writes there.

    ``resume=X`` must name a run folder that it can continue (``resumed_config``), and one with more to
    do than its finished epochs and test; a new run must not write into a folder that holds another run's
    checkpoints or metrics, which it would overwrite.

    Args:
        cfg: This launch's composed config, Hydra's node (``hydra.overrides.task``) included.
        run_dir: The run folder Hydra is about to write into.
        existed: Whether it was there before this process (``mnistlab.run_folders.note_existing``).
    """
    if cfg.resume is not None:
        from mnistlab.checkpoints import read_checkpoint

        try:
            saved = resumed_config(cfg.resume, cfg, list(cfg.hydra.overrides.task))
        except MnistlabError as e:
            return str(e)
        try:
            last = read_checkpoint(saved.ckpt_path)
        except MnistlabError:
            best = Path(saved.ckpt_path).with_name("best.ckpt")
            return f"resume={cfg.resume}: its checkpoints/last.ckpt is damaged or unreadable, so it cannot continue" + (
                f"; start a new run from its best weights: ckpt_path={best}" if best.is_file() else ""
            )
        epochs = saved.trainer.max_epochs
        finished = (run_dir / "metrics.json").is_file() and isinstance(epochs, int) and epochs > 0
        if finished and (done := finished_epochs(last)) >= epochs:
            return (
                f"resume={cfg.resume}: the run has finished its {done} epoch{'s' * (done != 1)} and its test; "
                f"add trainer.max_epochs=N (N > {done}) to train it further"
            )
        return None
    if existed and ((run_dir / "checkpoints").is_dir() or (run_dir / "metrics.json").is_file()):
        return (
            f"hydra.run.dir={run_dir} holds another run (checkpoints/, metrics.json), which this one would "
            f"overwrite: continue it with resume={run_dir}, or give a new folder"
        )
    return None


def resume_files(run_dir: str | Path) -> tuple[Path, Path]:
    """The saved config and ``last.ckpt`` of an interrupted run folder.

    Raises:
        MnistlabError: When ``run_dir`` is not a run folder or holds no ``last.ckpt`` yet.
    """
    run = Path(run_dir).expanduser().resolve()
    config, last = run / RECORD_DIR / "config.yaml", run / "checkpoints" / "last.ckpt"
    if run.is_file():
        folder = run.parent.parent if run.parent.name == "checkpoints" else run.parent
        raise MnistlabError(f"resume={run_dir} is a file: give the run's folder, resume={folder}")
    if (run / "multirun.yaml").is_file():
        raise MnistlabError(
            f"resume={run_dir} is a sweep folder: a sweep continues with its own command plus hydra.sweep.dir={run_dir}"
        )
    if not config.is_file():
        raise MnistlabError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml)")
    if not last.is_file():
        raise MnistlabError(f"resume={run_dir}: nothing to resume, no checkpoints/last.ckpt was saved yet")
    return config, last


def _as_written(cfg: DictConfig, key: str) -> Any:
    """The value of ``key`` with its interpolations as written (a logger's ``${resume}`` differs once resolved)."""
    node = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node


def resumed_config(run_dir: str, cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The saved config of ``run_dir``, set to continue from its ``last.ckpt``, with ``RESUMABLE`` overrides applied.

    Args:
        run_dir: The interrupted (or finished) run's folder.
        cfg: This launch's composed config, where the overrides' values are read.
        overrides: This launch's command-line overrides (``HydraConfig.get().overrides.task``).

    Raises:
        MnistlabError: For an override a continued run cannot take, or a ``trainer.max_epochs``
            that would end before the checkpoint or stretch a run whose LR schedule was sized
            for its original length.
    """
    config, last = resume_files(run_dir)
    saved = OmegaConf.load(config)
    epochs = saved.trainer.max_epochs  # the run's own, before the overrides
    for override in overrides:
        key = override_key(override)
        if key.startswith("hydra.") or key == "resume" or key in PRESENTATION:  # how to run or show it
            continue
        if _as_written(cfg, key) == _as_written(saved, key):  # as the run was: e.g. a sweep job's own
            continue
        if key not in RESUMABLE:
            raise MnistlabError(
                f"resume={run_dir} continues the run as it was configured and cannot take {key}; "
                f"only {', '.join(RESUMABLE)} may change (start a new run with ckpt_path=... instead)"
            )
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    if saved.get("scheduler") and saved.trainer.max_epochs != epochs:
        raise MnistlabError(
            f"resume={run_dir} cannot change trainer.max_epochs: its scheduler was sized for "
            f"{epochs} epochs, and a scheduled checkpoint cannot start a new run either; train a new run for longer"
        )
    saved.paths.output_dir, saved.ckpt_path, saved.resume = str(config.parents[1]), str(last), run_dir
    if saved.get("system", {}).get("teacher") and (teacher := recorded_teacher(run_dir, last)):
        # The saved config may name it relative to the first launch's folder (or ${hydra:runtime.cwd}); the
        # record then names the teacher by its file.
        saved.system.teacher = teacher[0] if len(teacher) == 1 else teacher
    return saved


def recorded_teacher(run_dir: str, last: Path) -> list[str] | None:
    """The distillation teacher's files that ``last`` records, checked unchanged; None if it records none.

    Raises:
        MnistlabError: A recorded file is gone or is another file now (its SHA-256 differs).
    """
    from mnistlab.checkpoints import read_checkpoint
    from mnistlab.systems.distillation import sha256

    try:
        members = (read_checkpoint(last).get("teacher") or {}).get("members") or []
    except MnistlabError:  # a damaged last.ckpt: run_folder_mistake says so, with what to do
        return None
    for member in members:
        path = Path(member["path"])
        if not path.is_file() or sha256(path) != member["sha256"]:
            now = "another file now (its SHA-256 differs from the checkpoint's record)" if path.is_file() else "gone"
            raise MnistlabError(f"resume={run_dir}: its distillation teacher {path} is {now}; the run cannot continue")
    return [member["path"] for member in members] or None


def finished_epochs(ckpt: dict[str, Any]) -> int:
    """The number of epochs a checkpoint has trained through (its loop state, else its epoch-end ``epoch``).

    An epoch-end checkpoint is saved while the epoch's training is ``processed`` but before Lightning
    counts it ``completed``; a mid-epoch one has the running epoch started, not processed.
    """
    from mnistlab.lightning_private import checkpoint_epochs_processed  # imports Lightning: only when asked

    processed = checkpoint_epochs_processed(ckpt)
    return processed if processed is not None else int(ckpt.get("epoch", -1)) + 1


def check_can_continue(ckpt_path: str | Path, max_epochs: int | None) -> None:
    """Refuses, before any work, to continue a checkpoint that has already finished ``max_epochs`` epochs.

    ``trainer.max_epochs`` keeps Lightning's meaning, the total number of epochs, also when a run
    continues from a checkpoint; Lightning itself would fail later with a traceback (or, at equality,
    train nothing).
    """
    from mnistlab.checkpoints import read_checkpoint

    if max_epochs is None or max_epochs < 0:
        return
    done = finished_epochs(read_checkpoint(ckpt_path))
    if done >= max_epochs:
        raise MnistlabError(
            f"the checkpoint has finished {done} epochs; set trainer.max_epochs above {done} to continue"
        )


def check_continuable(system: Classifier, ckpt_path: str | Path) -> None:
    """Refuses, before any work, a checkpoint that this run's system cannot continue.

    Lightning restores the checkpoint's weights into this run's network, its optimizer state into this
    run's optimizer and its schedule's state into this run's schedule: another network fails inside the
    fit (missing keys, other shapes), another optimizer at the first step (Adam's state has no SGD
    ``momentum_buffer``), each with a traceback; other optimizer settings (``lr``) are silently replaced
    by the saved ones; a schedule keeps its saved length and fails past it, and its last learning rate
    stays with the optimizer even when this run has no schedule.
    """
    import torch

    from mnistlab.checkpoints import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    saved = {k: tuple(v.shape) for k, v in ckpt.get("state_dict", {}).items() if isinstance(v, torch.Tensor)}
    ours = {k: tuple(v.shape) for k, v in system.state_dict().items()}
    if saved != ours:
        differs = sorted(set(saved) ^ set(ours)) or [k for k in ours if saved[k] != ours[k]]
        raise MnistlabError(
            f"ckpt_path={ckpt_path} holds another network than this run's model (first difference: {differs[0]}); "
            "give the model it was trained with (its run's .hydra/config.yaml)"
        )
    saved_hparams = ckpt.get("hyper_parameters") or {}
    before, now = saved_hparams.get("optimizer") or {}, system.hparams.get("optimizer") or {}
    if before and now and before.get("target") != now.get("target"):
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained with {before['target']}, whose state this run's {now['target']} "
            "cannot take up; give the optimizer it was trained with"
        )
    if before and now and (changed := sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))):
        settings = " ".join(f"optimizer.{k}={before.get(k)}" for k in changed)
        raise MnistlabError(
            f"ckpt_path={ckpt_path} restores its optimizer's state, settings included ({settings}): "
            "this run's other settings would not take effect; give those"
        )
    # A restored optimizer holds the learning rate where its schedule left it, and a new schedule cannot
    # start on restored state (OneCycleLR's KeyError 'initial_lr' at the first step).
    if ckpt.get("lr_schedulers"):
        lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained under a learning-rate schedule: its optimizer restores the "
            f"schedule's last learning rate ({lr:.3g}) and the schedule is sized for its own run; continue that "
            "run with resume=RUN_DIR"
        )
    if system.scheduler_factory is not None:
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained without a learning-rate schedule, and a schedule cannot start "
            "on its restored optimizer; continue it without scheduler"
        )


def interrupted_hint(run_dir: str | Path) -> str:
    """What to run after a Ctrl-C ended the run in ``run_dir``: ``resume=`` from its last checkpoint, if it has one."""
    from mnistlab.checkpoints import read_checkpoint

    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return "interrupted before the first checkpoint: nothing to continue from"
    ckpt = read_checkpoint(last)
    epochs, steps = finished_epochs(ckpt), ckpt.get("global_step", 0)
    return (
        f"interrupted; continue with: python scripts/train.py resume={run_dir} "
        f"(checkpoints/last.ckpt: {epochs} epoch{'s' * (epochs != 1)}, {steps} steps done)"
    )


def continue_from(ckpt_path: str | Path, max_epochs: int | None) -> Path:
    """The checkpoint that ``scripts/train.py ckpt_path=...`` continues: a file, or a run folder's last.ckpt."""
    from mnistlab.checkpoints import find_checkpoint

    path = find_checkpoint(ckpt_path, prefer=("last.ckpt",))
    check_can_continue(path, max_epochs)
    return path


def continued_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``cfg`` as the run takes it: a resumed run's saved config, or ``ckpt_path`` made a checkpoint file.

    Args:
        cfg: This launch's composed config (``conf/train.yaml``).
        overrides: This launch's command-line overrides (``HydraConfig.get().overrides.task``).
    """
    if cfg.resume:
        return resumed_config(cfg.resume, cfg, overrides)
    if cfg.ckpt_path:  # a file or a run folder; max_epochs counts the checkpoint's epochs too
        cfg.ckpt_path = str(continue_from(cfg.ckpt_path, cfg.trainer.max_epochs))
    return cfg


def launch_record(cfg: DictConfig) -> tuple[list[str], dict]:
    """The run's command-line overrides and config-group choices; a resumed run's are its first launch's."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    saved = Path(cfg.paths.output_dir) / RECORD_DIR / "hydra.yaml"
    if cfg.resume and saved.exists():
        hydra_cfg = OmegaConf.load(saved).hydra
    return list(hydra_cfg.overrides.task), OmegaConf.to_container(hydra_cfg.runtime.choices)


def mark_restart(trainer: pl.Trainer, ckpt_path: str | None) -> None:
    """Tells TensorBoard that a continued run restarts at its checkpoint's ``global_step``.

    A killed run may have logged past its last checkpoint. The resumed run appends to the
    same folder, and TensorBoard drops every event at a step from ``step`` on that came
    before this marker (``SummaryWriter(purge_step=...)`` writes the same marker, but to
    every new writer, and Lightning opens a new one for ``trainer.test``), so each step
    appears once and the curves stay continuous. A no-op for a new run and off rank zero.
    """
    if ckpt_path is None or not trainer.is_global_zero:
        return
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    from mnistlab.checkpoints import read_checkpoint
    from mnistlab.lightning_private import file_writer
    from mnistlab.tb_writers import tensorboard_writers

    # Batch b is logged at step b, so what the checkpoint holds was logged below ``step``.
    step = int(read_checkpoint(ckpt_path).get("global_step", 0))
    marker = Event(step=step, session_log=SessionLog(status=SessionLog.START))
    for writer in tensorboard_writers(trainer):
        file_writer(writer).add_event(marker)  # torch's SummaryWriter has no public way to add an event


def job_folders(sweep_dir: Path) -> dict[int, Path]:
    """The job folders of a sweep by job number, as each folder's first launch recorded it (``.hydra/hydra.yaml``)."""
    import yaml

    folders = {}
    for record in Path(sweep_dir).glob(f"*/{RECORD_DIR}/hydra.yaml"):
        try:
            num = yaml.safe_load(record.read_text())["hydra"]["job"]["num"]
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            continue  # a job killed while Hydra wrote its record: it starts again
        folders[int(num)] = record.parents[1]
    return folders


def _same_job(folder: Path, overrides: Sequence[str], exclude_keys: Sequence[str]) -> bool:
    """Whether ``folder`` was launched with ``overrides``, apart from ``exclude_keys`` (Hydra's folder naming)."""
    import yaml

    def shown(items: Sequence[str]) -> list[str]:
        return sorted(o for o in items if override_key(o) not in (*exclude_keys, "resume"))

    try:
        saved = yaml.safe_load((folder / RECORD_DIR / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return False
    return shown(saved) == shown(overrides)


def job_status(folder: Path) -> str | None:
    """The status a sweep job's ``job.json`` records (ok, pruned, failed), or None before its end."""
    import json

    from mnistlab.sweeps.summary import JOB_FILE

    try:
        return json.loads((folder / JOB_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def jobs_to_launch(
    sweep_dir: Path, jobs: Sequence[tuple[int, Sequence[str]]], exclude_keys: Sequence[str] = ()
) -> list[tuple[int, list[str]]]:
    """What a sweep still has to run of ``jobs`` (job number, overrides), when its folder holds an earlier launch.

    - A job whose ``job.json`` says ``ok`` or ``pruned`` is finished: it is kept as it is, not launched.
    - A job with a ``checkpoints/last.ckpt`` (killed, or failed, e.g. on a full disk) continues in its
      folder: ``resume=<folder>`` is added to its overrides (``resume`` is a placement key, so the
      folder's name stays), and the job resumes like ``scripts/train.py resume=<folder>``.
    - A job folder without one trained nothing that can be kept (it stopped in its start-up or first
      epoch): it is emptied, and the job runs from the start, as does a job without a folder.
    """
    folders = job_folders(sweep_dir)
    todo = []
    for num, overrides in jobs:
        folder = folders.get(num)
        if folder is None or not _same_job(folder, overrides, exclude_keys):
            todo.append((num, list(overrides)))
        elif job_status(folder) in FINISHED:
            print(f"job {num} kept: it finished in an earlier launch ({folder.name})", flush=True)
        elif (folder / "checkpoints" / "last.ckpt").is_file():
            log.info("job %d continues from %s", num, folder / "checkpoints" / "last.ckpt")
            quote = "'" if "'" not in str(folder) else '"'  # a job folder's name holds = and , (its overrides)
            todo.append((num, [*overrides, f"resume={quote}{folder.resolve()}{quote}"]))
        else:
            shutil.rmtree(folder)  # logs of a start that saved nothing; the job's new start writes its own
            todo.append((num, list(overrides)))
    return todo
