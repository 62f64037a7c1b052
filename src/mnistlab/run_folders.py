"""Where a command's Hydra run folder goes, and removing it when the command failed on a user error."""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_START = datetime.now()  # one time stamp per process, however often Hydra resolves the run folder


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

    ``<the checkpoint's run>/eval/<date>_<time>``, else ``outputs/<date>/<time>``.
    """
    ckpt = OmegaConf.select(_root_, "ckpt_path", default=None, throw_on_missing=False)
    run = checkpoint_run_dir(None if ckpt is None else str(ckpt))
    if run is None:  # no such checkpoint: the command fails, and its folder is discarded
        return f"outputs/{_START:%Y-%m-%d}/{_START:%H-%M-%S}"
    return str(run / "eval" / f"{_START:%Y-%m-%d_%H-%M-%S}")


def discard_run_dir() -> None:
    """Deletes this run's Hydra output folder when it holds nothing but Hydra's own records.

    Hydra creates the run folder (``.hydra/`` and the log file) before the script starts; a command
    that failed on a user error then leaves an unlabelled ``outputs/<date>/<time>/`` behind. A folder
    holding anything else (checkpoints, a resumed run's files) is kept. Emptied parent folders up
    to the launch directory go too.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None or hydra_cfg.mode is None or hydra_cfg.mode.name != "RUN":
        return
    run, cwd = Path(hydra_cfg.runtime.output_dir).resolve(), Path(hydra_cfg.runtime.cwd).resolve()
    if not run.is_dir() or run == cwd or run in cwd.parents:
        return
    own = {Path(str(hydra_cfg.output_subdir)).parts[0], f"{hydra_cfg.job.name}.log"}
    if any(p.name not in own for p in run.iterdir()):
        return
    shutil.rmtree(run, ignore_errors=True)
    if run.parent.name == "eval":  # evaluate.py's <run>/eval/, wherever the checkpoint's run is
        with contextlib.suppress(OSError):
            run.parent.rmdir()
    for parent in run.parents:  # e.g. outputs/2026-11-25/ and outputs/, when this run was their only content
        if parent == cwd or cwd not in parent.parents:  # only folders inside the launch directory
            break
        try:
            parent.rmdir()
        except OSError:
            break
