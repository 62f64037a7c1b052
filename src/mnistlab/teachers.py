"""The teacher of a distillation run (``system.teacher=``), loaded from checkpoints like any other model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mnistlab.checkpoint_paths import find_checkpoint, find_checkpoints
from mnistlab.checkpoints import load_system
from mnistlab.config_keys import override_key, shell_path_override
from mnistlab.data.specs import input_stats
from mnistlab.errors import CheckpointNotFoundError, ConfigError, MnistlabError
from mnistlab.resume.sweep import finished_run, is_run_folder, is_sweep_folder
from mnistlab.systems.distillation import Teacher


def input_affine(student: tuple[float, float], member: tuple[float, float]) -> tuple[float, float]:
    """(scale, shift) taking inputs standardised by ``student``'s (mean, std) to ``member``'s."""
    (s_mean, s_std), (m_mean, m_std) = student, member
    return s_std / m_std, (s_mean - m_mean) / m_std


def check_teacher_settings(overrides: Sequence[str], teacher: object) -> None:
    """Refuses ``system.alpha`` or ``system.temperature`` given without ``system.teacher``: they weigh and soften a
    teacher's targets, and without one they were ignored without a word (an Optuna search tuned them for nothing).

    Raises:
        ConfigError: For either on the command line (or drawn by a search) of a run without a teacher.
    """
    keys = ("system.alpha", "system.temperature")
    given = [o.lstrip("+") for o in overrides if not o.startswith("~") and override_key(o) in keys]
    if teacher is None and given:
        raise ConfigError(
            f"{given[0]} sets the distillation from a teacher, and this run has none: give system.teacher=RUN_DIR "
            f"(a trained run, a checkpoint or a sweep), or leave {override_key(given[0])} out"
        )


def check_finished(source: str | Path) -> None:
    """Refuses a run folder whose run has not finished (its test never ran): its checkpoints are half-trained.

    A sweep folder leaves such jobs out of its ensemble by itself (``find_checkpoints``); a checkpoint file
    named as such is taken as it is, which is how to teach with a half-trained run on purpose.

    Raises:
        MnistlabError: For a run folder, or its ``checkpoints/``, of a run still running, interrupted or failed.
    """
    folder = Path(source).expanduser()
    if not (folder.is_dir() and is_run_folder(folder)):
        return
    ckpt = find_checkpoint(folder, announce=False, setting="system.teacher")
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if finished_run(run):
        return
    finish = (
        f"finish its sweep first (the sweep's own command plus {shell_path_override('hydra.sweep.dir', run.parent)})"
        if is_sweep_folder(run.parent)
        else f"finish it first (python scripts/train.py {shell_path_override('resume', run)})"
    )
    raise MnistlabError(
        f"system.teacher={folder} is a run that has not finished (still running, interrupted "
        f"or failed: its test never ran), so its {ckpt.relative_to(run)} is half-trained: {finish}, or name the "
        f"file, {shell_path_override('system.teacher', ckpt)}, to teach with it as it is"
    )


def load_teacher(source: str | Path | list[str], student_input: tuple[float, float] = (0.0, 1.0)) -> Teacher:
    """A frozen distillation teacher from a run folder, a checkpoint, a sweep folder or a list of them.

    Every member is read by ``load_system`` (``weights_only=True``); several members are one
    ensemble, the mean of their probabilities. Members must agree on their classes. Each member
    gets the student's batches in its own input scale (``student_input``: the student's (mean, std)
    standardisation, (0, 1) for plain [0, 1] pixels).

    Raises:
        MnistlabError: No path (an empty string or list), no path at all (``true``, a mapping, a nested list), a
            missing, unsafe or foreign file, a run folder whose run has not finished, or members whose classes differ.
    """
    listed = not isinstance(source, (str, Path)) and isinstance(source, Sequence) and not isinstance(source, Mapping)
    sources = list(source) if listed else [source]
    if bad := [item for item in sources if not isinstance(item, (str, Path))]:  # true, 0, {a: 1}, [[a]]
        # list() took a mapping for its keys ({a: 1} -> "checkpoint not found: a"); true and 1 were a TypeError
        raise MnistlabError(
            f"system.teacher={source}{f': {bad[0]}' if listed else ''} is not a path; give a run folder, a checkpoint, "
            "a sweep folder or a list of them, or system.teacher=null to train on the labels alone"
        )
    if not sources or (isinstance(source, str) and not source.strip()):
        raise MnistlabError(
            f"system.teacher={source!r} names no teacher: give a run folder, a checkpoint or a sweep folder, "
            "or system.teacher=null to train on the labels alone"
        )
    try:
        for item in sources:
            check_finished(item)
        files = find_checkpoints(sources, "system.teacher")
        loaded = [load_system(f) for f in files]
    except CheckpointNotFoundError as e:  # most often a preset's teacher (distill_hidden's) not trained yet
        raise MnistlabError(
            f"system.teacher: {e}; train the teacher there first (the command is in "
            "docs/usage.md#distillation-a-trained-model-teaches-another-network), or name an existing run folder, "
            "checkpoint or sweep folder"
        ) from None
    except MnistlabError as e:
        raise MnistlabError(f"system.teacher: {e}" if not str(e).startswith("system.teacher") else str(e)) from None
    systems = [system for system, _ in loaded]
    names = systems[0].class_names
    for f, system in zip(files, systems, strict=True):
        if system.class_names != names:
            raise MnistlabError(f"system.teacher: {f} has classes {system.class_names}, {files[0]} has {names}")
    inputs = [input_affine(student_input, input_stats(data)) for _, data in loaded]
    return Teacher([s.net for s in systems], [s.head for s in systems], files, names, inputs)
