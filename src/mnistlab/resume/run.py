"""Continuing one run: its folder, its config and its record (``resume=``, ``ckpt_path=``); its loggers: ``loggers``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnistlab.config_checks import check_devices, check_resume, check_trainer_counts
from mnistlab.config_keys import PLACEMENT, PRESENTATION, override_key, shell_path_override
from mnistlab.errors import MnistlabError
from mnistlab.resume.checkpoint import continue_from, finished_epochs, restart_hint

# What may change when a run continues: how long it trains and where. Anything else would make the
# continued run a different experiment in the same folder.
RESUMABLE = (
    "trainer.max_epochs", "trainer.max_time", "trainer.accelerator", "trainer.devices",
    "callbacks.time_to_target.target",
)  # fmt: skip
RECORD_DIR, RESUME_RECORD_DIR = ".hydra", ".hydra/resume"
SWEEP_RECORD = "multirun.yaml"  # Hydra writes it into a sweep's folder as the sweep starts (-m), never into a run's


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
            # What may change is checked as compose would, but before Hydra or a logger writes into the folder.
            check_devices(trainer := OmegaConf.to_container(saved.trainer, resolve=True))
            check_trainer_counts(trainer)
        except MnistlabError as e:
            return str(e)
        if run_dir != Path(saved.paths.output_dir):  # its log, lock and records would go elsewhere, its files not
            return f"resume={cfg.resume} continues the run in its own folder: drop hydra.run.dir={run_dir}"
        try:
            last = read_checkpoint(saved.ckpt_path)
        except MnistlabError:
            best = Path(saved.ckpt_path).with_name("best.ckpt")
            return f"resume={cfg.resume}: its checkpoints/last.ckpt is damaged or unreadable, so it cannot continue" + (
                restart_hint(Path(saved.ckpt_path).parent.parent, best, saved.trainer.max_epochs)
            )
        epochs, steps = saved.trainer.max_epochs, saved.trainer.get("max_steps", -1)
        tested = (run_dir / "metrics.json").is_file()
        if tested and isinstance(steps, int) and steps > 0 and last.get("global_step", 0) >= steps:
            # Lightning stops at max_steps whatever max_epochs says, and a resume keeps the run's max_steps.
            return (
                f"resume={cfg.resume}: the run has finished its trainer.max_steps={steps} steps and its test, "
                "and a resumed run keeps its max_steps: there is nothing left to train"
            )
        if tested and _out_of_time(saved.trainer.get("max_time"), last):
            # Lightning's Timer restores the time it counted: the resumed run stopped at once, tested again.
            return (
                f"resume={cfg.resume}: the run has used its trainer.max_time={saved.trainer.max_time} and finished "
                "its test; add +trainer.max_time=DD:HH:MM:SS, longer, to train it further"
            )
        if tested and isinstance(epochs, int) and epochs > 0 and (done := finished_epochs(last)) >= epochs:
            return (
                f"resume={cfg.resume}: the run has finished its {done} epoch{'s' * (done != 1)} and its test; "
                f"add trainer.max_epochs=N (N > {done}) to train it further"
            )
        return None
    held = _records(run_dir) if existed else []
    if SWEEP_RECORD in held:
        # Its checkpoints/ would make evaluate.py, predict.py and export.py take the folder for this one run.
        return (
            f"hydra.run.dir={run_dir} is a sweep folder (multirun.yaml): a run written into it would stand for "
            "the sweep when the folder is given as ckpt_path; give a new folder"
        )
    if held:
        return (
            f"hydra.run.dir={run_dir} holds another run (checkpoints/, metrics.json), which this one would "
            f"overwrite: continue it with {shell_path_override('resume', run_dir)}, or give a new folder"
        )
    return None


def _out_of_time(max_time: Any, checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint's ``Timer`` (Lightning's, for ``trainer.max_time``) has used all of ``max_time``."""
    if max_time is None:
        return False
    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration=OmegaConf.to_container(max_time) if OmegaConf.is_config(max_time) else max_time)
    if (state := checkpoint.get("callbacks", {}).get(timer.state_key)) is None:
        return False
    timer.load_state_dict(state)
    return (timer.time_remaining() or 0.0) <= 0


def report_folder_mistake(run_dir: Path, existed: bool) -> str | None:
    """What is wrong with a folder given to ``evaluate.py`` as ``hydra.run.dir``: one that holds a run, a sweep
    or a report, whose records (``.hydra/``, ``metrics.json``) the report would replace (a run then resumes no
    more)."""
    held = _records(run_dir) if existed else []
    if not held:
        return None
    return (
        f"hydra.run.dir={run_dir} holds a run, a sweep or a report ({', '.join(held)}), which this report would "
        "overwrite: leave hydra.run.dir out (a report goes into <run>/eval/<date>_<time>/) or give a new folder"
    )


def _records(run_dir: Path) -> list[str]:
    """The records of a run, a sweep or a report in ``run_dir``: a command writing there would overwrite them."""
    return [name for name in ("checkpoints", SWEEP_RECORD, "metrics.json") if (run_dir / name).exists()]


def resume_files(run_dir: str | Path) -> tuple[Path, Path]:
    """The saved config and ``last.ckpt`` of an interrupted run folder.

    Raises:
        MnistlabError: When ``run_dir`` is not a run folder or holds no ``last.ckpt`` yet.
    """
    check_resume(run_dir)
    run = Path(run_dir).expanduser().resolve()
    config, last = run / RECORD_DIR / "config.yaml", run / "checkpoints" / "last.ckpt"
    if run.is_file():
        folder = run.parent.parent if run.parent.name == "checkpoints" else run.parent
        raise MnistlabError(f"resume={run_dir} is a file: give the run's folder, resume={folder}")
    if (run / SWEEP_RECORD).is_file():
        raise MnistlabError(
            f"resume={run_dir} is a sweep folder: a sweep continues with its own command plus hydra.sweep.dir={run_dir}"
        )
    if not config.is_file():
        raise MnistlabError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml)")
    if not last.is_file():
        if not _saves_checkpoints(run):
            raise MnistlabError(
                f"resume={run_dir}: nothing to resume, the run was started with trainer.enable_checkpointing=false "
                "and saved no checkpoint; start it again"
            )
        raise MnistlabError(f"resume={run_dir}: nothing to resume, no checkpoints/last.ckpt was saved yet")
    return config, last


def _saves_checkpoints(run: Path) -> bool:
    """False when the run folder's saved config turned checkpoints off (``trainer.enable_checkpointing=false``)."""
    try:
        trainer = OmegaConf.load(run / RECORD_DIR / "config.yaml").get("trainer") or {}
    except Exception:  # no readable record: the usual message, which names what is missing
        return True
    return trainer.get("enable_checkpointing", True) is not False


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
    if not {"seed", "model", "trainer", "callbacks"} <= set(saved):
        raise MnistlabError(f"resume={run_dir}: its .hydra/config.yaml is not a training run's (another script's)")
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
            f"{epochs} epoch{'s' * (epochs != 1)}, and a scheduled checkpoint cannot start a new run either; "
            "train a new run for longer"
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
            back = "put the original back there" if path.is_file() else "put it back there"  # the record is its path
            raise MnistlabError(
                f"resume={run_dir}: its distillation teacher {path} is {now}; the run cannot continue until you {back}"
            )
    return [member["path"] for member in members] or None


def continued_config(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``cfg`` as the run takes it: a resumed run's saved config, or ``ckpt_path`` made a checkpoint file.

    Args:
        cfg: This launch's composed config (``conf/train.yaml``).
        overrides: This launch's command-line overrides (``HydraConfig.get().overrides.task``).
    """
    if cfg.resume:
        return resumed_config(cfg.resume, cfg, overrides)
    if cfg.ckpt_path is not None and not isinstance(cfg.ckpt_path, str):  # [] too
        raise MnistlabError(
            "ckpt_path= of train.py is one checkpoint or run folder to continue; a list is an ensemble, "
            "which evaluate.py, predict.py, export.py and serve.py take"
        )
    if cfg.ckpt_path is not None:  # a file or a run folder ('' refused); max_epochs counts the checkpoint's epochs too
        cfg.ckpt_path = str(continue_from(cfg.ckpt_path, cfg.trainer.max_epochs))
    return cfg


def launch_record(cfg: DictConfig) -> tuple[list[str], dict, list[str]]:
    """The run's command-line overrides, config-group choices and the keys its folder name leaves out (Hydra's
    ``exclude_keys``: ``PLACEMENT``, or fewer in a sweep that varies one); a resumed run's are its first launch's."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    saved = Path(cfg.paths.output_dir) / RECORD_DIR / "hydra.yaml"
    if cfg.resume and saved.exists():
        hydra_cfg = OmegaConf.load(saved).hydra
    try:
        hidden = [str(key) for key in hydra_cfg.job.config.override_dirname.exclude_keys]
    except OmegaConfBaseException:  # a record that does not resolve here (another interpolation): the project's list
        hidden = list(PLACEMENT)
    return list(hydra_cfg.overrides.task), OmegaConf.to_container(hydra_cfg.runtime.choices), hidden


def interrupted_hint(run_dir: str | Path) -> str:
    """What to run after a Ctrl-C ended the run in ``run_dir``: ``resume=`` from its last checkpoint, if it has one."""
    from mnistlab.checkpoints import read_checkpoint

    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        if not _saves_checkpoints(Path(run_dir)):
            return "interrupted; trainer.enable_checkpointing=false saved no checkpoint: nothing to continue from"
        return "interrupted before the first checkpoint: nothing to continue from"
    ckpt = read_checkpoint(last)
    epochs, steps = finished_epochs(ckpt), ckpt.get("global_step", 0)
    return (
        f"interrupted; continue with: python scripts/train.py {shell_path_override('resume', run_dir)} "
        f"(checkpoints/last.ckpt: {epochs} epoch{'s' * (epochs != 1)}, {steps} steps done)"
    )
