"""Where a command's Hydra run folder goes (a new one per process); removing it after a user error or a smoke test."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# The files of a run folder that TensorBoard reads: one per writer (training, the test, an HParams record).
EVENT_FILES = "events.out.tfevents.*"
_START = datetime.now()  # one time stamp per process, however often Hydra resolves the run folder
_CLAIMED: dict[str, str] = {}  # base path -> the folder this process made for it
_EXISTED: set[Path] = set()  # run folders that were there before Hydra wrote into them: never discarded
_LOCKS: list[int] = []  # descriptors of the run folders this process has locked, held until it ends


def claim_folder(base: str | Path) -> str:
    """``base``, or ``base_2``, ``base_3``, ...: the first that this process creates itself.

    Runs started in the same second (a shell loop with ``&``, a scheduler's array) would share a
    folder named to the second. ``mkdir`` without ``exist_ok`` succeeds for one process only, on
    any local or network file system, so each run gets a folder of its own. Hydra resolves a run
    folder more than once: the process keeps the folder it claimed for ``base``.
    """
    key = str(base)
    if key not in _CLAIMED:
        path = Path(base)
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            _CLAIMED[key] = str(candidate)
            break
    return _CLAIMED[key]


def folder_mistake(folder: str) -> str | None:
    """Why ``folder`` (a run or sweep folder given on the command line) cannot be made, or None.

    Hydra makes it only once the job starts, and answers a failure with a traceback. A folder is
    made and removed at once in ``folder``, or in its nearest existing parent: the one faithful test,
    since a permission check says yes to root even on ``/proc`` or a read-only mount.
    """
    path = Path(folder).expanduser()
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mnistlab-probe-", dir=parent))
    except OSError as e:
        return f"cannot make a folder in {parent.absolute()}: {e.strerror}"
    return None


def release_claimed_folders() -> None:
    """Removes the folders this process claimed and left empty, and the parents that they alone filled.

    For a command that stops on a user error before it writes anything (e.g. a refused launcher):
    like ``discard_run_dir``, no unlabelled ``multirun/<date>/<time>/`` stays behind.
    """
    for claimed in _CLAIMED.values():
        _remove_empty(Path(claimed).resolve(), Path.cwd().resolve())


def _remove_empty(folder: Path, cwd: Path) -> None:
    """Removes ``folder``, then each parent, while it is empty and inside the launch directory ``cwd``."""
    for path in (folder, *folder.parents):
        if path == cwd or cwd not in path.parents:
            return
        try:
            path.rmdir()  # only when empty
        except OSError:
            return


def new_folder(root: str) -> str:
    """Resolver ``${mnistlab.new_folder:ROOT}``: ``ROOT/<date>/<time>`` (``<time>_2`` when taken), made by this process.

    The default ``hydra.run.dir`` (``outputs``) and ``hydra.sweep.dir`` (``multirun``); see ``claim_folder``.
    """
    return claim_folder(Path(root) / f"{_START:%Y-%m-%d}" / f"{_START:%H-%M-%S}")


def one_folder(name: str, limit: int = 200) -> str:
    """Resolver ``${mnistlab.one_folder:...}``: a job's folder name, one folder deep and short enough to make.

    ``callbacks.model_checkpoint.monitor=val/loss`` in ``hydra.job.override_dirname`` nested each job one
    folder deeper, where the sweep's summary (``<sweep>/<job>/.hydra``) found none of them: its slashes become
    underscores. A name over ``limit`` bytes (file systems refuse 255) ends in ``...``: the job number before it
    keeps it unique, and its ``.hydra/overrides.yaml`` holds them all.
    """
    name = name.replace("/", "_").replace(os.sep, "_")
    if len(name.encode()) <= limit:
        return name
    return name.encode()[: limit - 3].decode(errors="ignore") + "..."


def checkpoint_run_dir(ckpt_path: str | None) -> Path | None:
    """The run folder of a checkpoint (``<run>/checkpoints/x.ckpt`` -> ``<run>``), if it exists and is writable."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser().absolute()
    if path.is_file():
        path = path.parent
    if path.name == "checkpoints":
        path = path.parent
    return path if path.is_dir() and os.access(path, os.W_OK) else None


def eval_dir(*, _root_: DictConfig) -> str:
    """Resolver ``${mnistlab.eval_dir:}``, evaluate.py's ``hydra.run.dir``.

    ``<the checkpoint's run>/eval/<date>_<time>``, else ``outputs/<date>/<time>``; either made by
    this process alone (``claim_folder``).
    """
    ckpt = OmegaConf.select(_root_, "ckpt_path", default=None, throw_on_missing=False)
    run = checkpoint_run_dir(None if ckpt is None else str(ckpt))
    if run is None:  # no such checkpoint: the command fails, and its folder is discarded
        return new_folder("outputs")
    return claim_folder(run / "eval" / f"{_START:%Y-%m-%d_%H-%M-%S}")


def _claimed_here(folder: Path) -> bool:
    """Whether this process made ``folder`` for a new run (``claim_folder``)."""
    return folder.resolve() in {Path(c).resolve() for c in _CLAIMED.values()}


def note_existing(run_dir: str | Path) -> bool:
    """Called before Hydra writes into the run folder: True (and remembered) if it was there already.

    Such a folder is the user's (``resume=RUN``, ``hydra.run.dir=`` an old folder): ``discard_run_dir`` keeps it.
    """
    path = Path(run_dir).expanduser().resolve()
    if not path.exists() or _claimed_here(path):
        return False
    _EXISTED.add(path)
    return True


def lock_run_folder(run_dir: Path, setting: str = "hydra.run.dir", kind: str = "run") -> str | None:
    """Takes ``run_dir`` for this process (an exclusive lock, released when the process ends); None, or why not.

    Two runs given the same ``hydra.run.dir`` (or two ``resume=`` of one run) at once would both train
    into it and both test the one ``best.ckpt`` left, each printing the other's result. The folder's
    checks (``resume.run.run_folder_mistake``) look at what is on disk; only a lock sees a run still going.
    The lock is an ``flock`` on the folder itself, so nothing is added to it. POSIX only (``fcntl``);
    elsewhere, or on a file system without locks, nothing is locked.

    Args:
        run_dir: The folder.
        setting: The setting that named it, for the message.
        kind: What uses it (a run; a sweep locks its ``hydra.sweep.dir``).
    """
    try:
        import fcntl
    except ImportError:
        return None
    if _claimed_here(run_dir):
        return None  # a new outputs/<date>/<time>: this process made it (claim_folder), no other can have it
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder)
        _EXISTED.add(run_dir.resolve())  # the other process's folder: never discarded by this one
        return _in_use_line(run_dir, setting, kind)
    except OSError:  # no locks here (some network file systems): the on-disk checks alone
        os.close(folder)
        return None
    _LOCKS.append(folder)
    return None


def _in_use_line(run_dir: Path, setting: str, kind: str = "run") -> str:
    # A resume continues this very folder: another one would not do.
    fix = "let it end (or stop it), then resume" if setting == "resume" else "give a new folder"
    return f"{setting}={run_dir} is in use by another {kind} that is still going: {fix}"


def in_use_by_another(run_dir: Path, setting: str) -> str | None:
    """Why ``run_dir`` cannot be taken, if another process holds its lock (``lock_run_folder``); else None.

    It only looks (a shared lock, let go at once), so two refused commands never block each other.
    """
    try:
        import fcntl
    except ImportError:
        return None
    try:
        folder = os.open(run_dir, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(folder, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _in_use_line(run_dir, setting)
    except OSError:
        return None
    finally:
        os.close(folder)  # closing the descriptor lets go of a lock taken through it
    return None


def _empty_event_file(path: Path) -> bool:
    """A TensorBoard event file holding its header alone: Lightning opens one before the data is set up."""
    if not path.match(EVENT_FILES):
        return False
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    try:
        return all(event.WhichOneof("what") == "file_version" for event in EventFileLoader(str(path)).Load())
    except Exception:  # unreadable: not known to be empty, so kept
        return False


def discard_run_dir(whole: bool = False) -> None:
    """Deletes this run's Hydra output folder when it holds nothing but Hydra's own records (and empty event files).

    Hydra creates the run folder (``.hydra/`` and the log file) before the script starts; a command
    that failed on a user error, or a smoke test (``fast_dev_run``), then leaves an unlabelled
    ``outputs/<date>/<time>/`` behind. A folder
    holding anything else (checkpoints, a resumed run's files) is kept, unless ``whole``: an interrupted
    report (``evaluate.py``'s), which is redone in seconds. Either way a folder that was there before the
    command is kept. Emptied parent folders up to the launch directory go too.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None or hydra_cfg.mode is None or hydra_cfg.mode.name != "RUN":
        return
    run, cwd = Path(hydra_cfg.runtime.output_dir).resolve(), Path(hydra_cfg.runtime.cwd).resolve()
    if not run.is_dir() or run == cwd or run in cwd.parents or run in _EXISTED:
        return
    own = {Path(str(hydra_cfg.output_subdir)).parts[0], f"{hydra_cfg.job.name}.log"}
    if not whole and any(p.name not in own and not _empty_event_file(p) for p in run.iterdir()):
        return
    shutil.rmtree(run, ignore_errors=True)
    if run.parent.name == "eval":  # evaluate.py's <run>/eval/, wherever the checkpoint's run is
        with contextlib.suppress(OSError):
            run.parent.rmdir()
    _remove_empty(run.parent, cwd)  # e.g. outputs/2026-11-25/ and outputs/, when this run was their only content
