"""What entry scripts share: user errors as one line and exit code 2, no folder left behind, a quiet console.

A user error is something the user can fix from the command line: mnistlab's own ``MnistlabError``
(bad values, data files, checkpoints), a mandatory setting left out (``ckpt_path=???``), Lightning's
``MisconfigurationException`` (a Trainer setting this machine or run cannot honour), and a bad
value refused by the constructor of an object the config builds (Hydra wraps those). Anything
else is a bug, in mnistlab or in the user's own code, and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.console import quiet_console
from mnistlab.errors import MnistlabError

EXIT_USER_ERROR = 2
# Lightning's wording for "accelerator=gpu on a machine without one", and what mnistlab says instead.
NO_GPU = "No supported gpu backend found!"


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``raise ... from``), and so on."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _is_misconfiguration(exc: BaseException) -> bool:
    return any(cls.__name__ == "MisconfigurationException" for cls in type(exc).__mro__)


def user_error(exc: BaseException) -> str | None:
    """The one-line message of a user error behind ``exc`` (configs wrap them), else None (a bug)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    # mnistlab's own message first, also when Hydra's instantiation error wraps it.
    if own := next((e for e in exception_chain(exc) if isinstance(e, MnistlabError)), None):
        return str(own)
    for seen in exception_chain(exc):
        if isinstance(seen, MissingMandatoryValue):
            key = seen.full_key or "a setting"
            return f"{key} is required: add {key}=... to the command" + (
                " (a .ckpt file or a run folder)" if key == "ckpt_path" else ""
            )
        if _is_misconfiguration(seen):
            text = str(seen).strip()
            if text == NO_GPU:
                return "trainer.accelerator=gpu, but this machine has no usable GPU; use trainer.accelerator=cpu"
            return text
        if isinstance(seen, InstantiationException) and isinstance(seen.__cause__, (ValueError, TypeError)):
            # A constructor refused a value of the config (Trainer(precision='foo'), MLP(head='x')): the user's.
            key = str(seen).rsplit("full_key: ", 1)[1].strip() if "full_key: " in str(seen) else ""
            cause = str(seen.__cause__).strip()
            return f"{key}: {cause}" if key and not cause.startswith(key) else cause
    return None


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


_START = datetime.now()  # one time stamp per process, however often Hydra resolves the run folder


def _eval_dir(*, _root_: DictConfig) -> str:
    """``hydra.run.dir`` of evaluate.py: ``<the checkpoint's run>/eval/<date>_<time>``, else outputs/<date>/<time>."""
    now = _START
    node = _root_._get_node("ckpt_path")
    ckpt = None if node is None or node._is_missing() else node._value()
    run = checkpoint_run_dir(None if ckpt is None else str(ckpt))
    if run is None:  # no such checkpoint: the command fails, and its folder is discarded
        return f"outputs/{now:%Y-%m-%d}/{now:%H-%M-%S}"
    return str(run / "eval" / f"{now:%Y-%m-%d_%H-%M-%S}")


def _if_set(value: Any, then: Any, otherwise: Any) -> Any:
    return otherwise if value is None else then


def register_resolvers() -> None:
    """The configs' ``${mnistlab.eval_dir:}`` and ``${mnistlab.if_set:VALUE,THEN,OTHERWISE}``.

    Call before ``hydra.main`` composes.
    """
    for name, resolver in (("mnistlab.eval_dir", _eval_dir), ("mnistlab.if_set", _if_set)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def skip_final_collection() -> None:
    """Spares the interpreter its last garbage collection at exit, some 0.7 s once Lightning is loaded.

    At exit Python clears every module and walks the millions of objects that torch,
    Lightning, torchmetrics and torchvision leave, looking for reference cycles. ``gc.freeze``,
    registered here to run after the exit handlers registered later (loggers' last flush,
    MLflow's), takes those objects out of the collector's sight. The rest of the exit is
    unchanged: objects are freed as their references go, files are flushed and closed. Only
    ``__del__`` of objects caught in cycles is skipped, which Python does not promise at exit.
    """
    atexit.register(gc.freeze)


@contextmanager
def user_errors() -> Iterator[None]:
    """Prints ``error: <message>`` and exits with 2 instead of a traceback for errors the user can fix."""
    quiet_console()
    try:
        yield
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        discard_run_dir()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
