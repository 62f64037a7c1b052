"""Process setup: every process-wide setting mnistlab makes, each with its reason, for the entry scripts.

Library code changes no process-wide state; the entry scripts (``scripts/*.py``, the benchmarks
that train) call these, and the sweep plugin's callbacks, which Hydra runs in the job's process,
use ``JobConsole`` and ``pin_gpu`` (and ``configure_job`` before the folds' ensemble is tested in the
sweep's process; the sweepers ``hint_on_interrupt``). What is set, and why:

- ``setup``, first thing, before Hydra composes:
  - OmegaConf resolvers ``${mnistlab.*}``: the configs' run folders (evaluate's, a resumed run's) and
    Hydra's exclude keys (``mnistlab.config_keys``), a dataset's folder (``mnistlab.data.specs``).
  - an exit hook, ``gc.freeze``: spares some 0.7 s of the interpreter's last collection.
  - an exit hook that removes the folders this process claimed and left empty (``run_folders``).
- ``configure_job``, as a job starts (after Hydra has set up logging):
  - warnings filters: notices nobody can act on (``IGNORED_WARNINGS``).
  - the ``lightning`` loggers' handlers and a tips filter: each log line once, no advertisements.
  - ``PYTORCH_NVML_BASED_CUDA_CHECK=0`` where NVML cannot load: Adam asks CUDA at every step.
  - ``threading.excepthook``: a TensorBoard writer thread's failed write (a full disk) prints no
    traceback of its own; the run reports it in one line.
  - the ``gc.freeze`` exit hook of ``setup`` in a parallel launcher's worker, which never ran ``setup``.
  - glibc's malloc keeps freed tensor memory for reuse (``keep_freed_memory``): a CNN epoch spent a
    sixth of its time in the kernel, mapping and unmapping its activations.
- ``exit_on_user_error``: a user error ends the process with one line and exit status 2.
- ``hint_on_interrupt``: after a Ctrl-C or a SIGTERM, the line that continues the run (exit 130 or 143).
- ``ddp_children_join_this_job``: ``sys.argv``, ``__main__.__spec__`` and the environment for
  Lightning's DDP re-launch, restored after the job.
- ``JobConsole``: ``sys.stdout``/``sys.stderr`` and the root logger's console handlers of a sweep job.
- ``pin_gpu``: ``CUDA_VISIBLE_DEVICES`` of a sweep worker.
- ``stop_server_on_signals``: Ctrl+C and SIGTERM stop the server once, from its main process, without
  tracebacks from LitServe's children; ``ignore_interrupts_in_worker`` in its inference workers.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

# Warnings that say nothing the user can act on, matched by the start of their message.
IGNORED_WARNINGS = (
    # lightning/pytorch/utilities/_pytree.py on torch >= 2.9: Lightning's own use of a deprecated torch API.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # A run without validation (data.val_size=0) returns no validation batches on purpose.
    r"Total length of `list` across ranks is zero",
    # Lightning 2.6 warns that a step-interval checkpoint of a manually optimized module (mnistlab.engine's
    # fast path) holds the weights after the step: so does the per-step engine's, which that path reproduces.
    r"Using ModelCheckpoint with manual optimization",
)
# Advertisements Lightning logs at INFO ("💡 Tip: ... try installing litlogger / litmodels").
TIP_PREFIX = "💡 Tip:"
# Lightning's device lines about accelerators this project never uses (the GPU line stays: it says what ran).
DROPPED_PREFIXES = (TIP_PREFIX, "TPU available:", "HPU available:")
NVML_VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"
# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets; a user's MALLOC_* variables win.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 256 << 20, 512 << 20


def setup() -> None:
    """What an entry script sets before Hydra composes its config; call it first, under ``__main__``."""
    from mnistlab.run_folders import release_claimed_folders

    register_resolvers()
    skip_final_collection()
    # A single run whose config names ${hydra:sweep.dir} (logger=mlflow, hparams_search=optuna) made the
    # sweep's folder when it was resolved: left empty, it goes at exit.
    atexit.register(release_claimed_folders)


def register_resolvers() -> None:
    """The configs' ``${mnistlab.*}`` resolvers: run folders, Hydra's exclude keys, a dataset's folder.

    OmegaConf's resolvers are a registry of the process; the configs cannot compose without them.
    """
    from omegaconf import OmegaConf

    from mnistlab.config_keys import placement_keys
    from mnistlab.data.specs import dataset_folder
    from mnistlab.resume.run import resume_record_dir, resume_run_dir
    from mnistlab.run_folders import eval_dir, new_folder

    resolvers = {
        "mnistlab.eval_dir": eval_dir,
        "mnistlab.new_folder": new_folder,
        "mnistlab.placement_keys": placement_keys,
        "mnistlab.dataset_folder": dataset_folder,
        "mnistlab.val_size": val_size,
        "mnistlab.resume_run_dir": resume_run_dir,
        "mnistlab.resume_record_dir": resume_record_dir,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def val_size(cv: int | None, size: int) -> int:
    """``${mnistlab.val_size:${cv},5000}``: the held-out size, or 0 under ``cv=K`` (a fold validates)."""
    return size if cv is None else 0


_exit_hook_registered = False


def skip_final_collection() -> None:
    """Spares the interpreter its last garbage collection at exit, some 0.7 s once Lightning is loaded.

    ``gc.freeze``, run after the exit handlers registered later (loggers' last flush), hides the
    millions of objects torch and Lightning leave from the collector's last walk. Objects are still
    freed and files closed; only ``__del__`` of objects in cycles is skipped, which Python does not
    promise at exit. Registered once per process.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(gc.freeze)
        _exit_hook_registered = True


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(DROPPED_PREFIXES)


def configure_job() -> None:
    """A quiet console and a cheap CUDA check for the job about to run; idempotent.

    - Drops the warnings of ``IGNORED_WARNINGS``.
    - ``import lightning`` gives the ``lightning`` logger a console handler of its own, while
      Hydra's handler on the root logger prints the same records again: Hydra's (console and log
      file) is kept, so each line is printed once. Lightning's tips are filtered out.
    - ``skip_nvml_probe_without_driver``.
    - ``skip_final_collection``: a parallel launcher's worker (joblib) runs jobs without the script's
      ``setup``, and the sweep waits for its exit (about 1 s a worker without it).
    """
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    import lightning  # noqa: F401  (adds the handler removed below, and sets the NVML variable)

    root_has_handlers = bool(logging.getLogger().handlers)
    # rank_zero_info logs through the last one; a filter on a parent logger does not see propagated records.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if root_has_handlers and name != "lightning.pytorch.utilities.rank_zero":
            logger.handlers.clear()
            logger.propagate = True
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    skip_nvml_probe_without_driver()
    quiet_event_writer_threads()
    skip_final_collection()
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed blocks of up to 256 MB for reuse instead of returning them to the kernel.

    glibc maps a large block (128 KB to 32 MB) afresh and unmaps it when freed, so every CNN step
    faulted in new pages for its activations (``experiment=cnn``: 15% of the fit in the kernel;
    docs/performance.md). Results are the same bit for bit. Skipped where the C library is not
    glibc or the user set ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``.

    Returns:
        True if the thresholds were set.
    """
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        os.confstr("CS_GNU_LIBC_VERSION")  # raises where the C library is not glibc (musl, macOS, Windows)
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trimmed = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(trimmed and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def quiet_event_writer_threads() -> None:
    """Keeps the traceback of a TensorBoard writer thread's failed write (a full disk) off the console.

    TensorBoard writes event files in a thread of its own, which ends on a failed write; Python
    prints that thread's traceback, and the writer hands the same error to the run at its next
    write, where it becomes the run's one-line error (``mnistlab.tb_writers.tensorboard_write_errors``).
    """
    from mnistlab.errors import is_write_error

    default = threading.excepthook
    if getattr(default, "mnistlab", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and is_write_error(args.exc_value)):
            default(args)

    hook.mnistlab = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def skip_nvml_probe_without_driver() -> bool:
    """Sets ``PYTORCH_NVML_BASED_CUDA_CHECK=0`` where NVML cannot be loaded, so CUDA checks skip the failed load.

    Lightning sets the variable to 1 when imported; torch then tries to load ``libnvidia-ml.so.1``
    at every CUDA check, and without a driver falls back to the answer it gives without the
    variable, after a failed library search of some 45 us. Adam asks at every ``step()``: about 8%
    of a 784-100-10 step at batch 32 on a CPU-only machine. Where NVML loads, nothing changes.
    Call it after ``import lightning``.

    Returns:
        True if the variable was changed.
    """
    if os.environ.get(NVML_VARIABLE) != "1":
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        os.environ[NVML_VARIABLE] = "0"
        log.debug("no NVML library: %s=0 (torch.cuda.is_available() asks the CUDA runtime directly)", NVML_VARIABLE)
        return True
    return False


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Prints ``error: <message>`` and exits with 2 instead of a traceback for errors the user can fix.

    The run folder Hydra made for the failed command is removed when it holds only Hydra's records.
    """
    from mnistlab.run_folders import discard_run_dir
    from mnistlab.user_errors import EXIT_USER_ERROR, user_error

    try:
        yield
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        discard_run_dir()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


@contextmanager
def hint_on_interrupt(hint: Callable[[], str]) -> Iterator[None]:
    """After a Ctrl-C or a SIGTERM, prints ``hint()`` (what to run to continue) on rank 0: a run's, or a sweep's.

    Lightning catches the ``KeyboardInterrupt`` inside ``trainer.fit``, shuts down and exits with 1;
    that exit keeps its status (in a sweep's sequential job too, which ends the sweep). One outside
    the fit (while the data loads, or under joblib while the sweep waits for its workers) ends the
    process with 130, the shell's status for SIGINT, instead of a traceback. Lightning ends a fit
    that received SIGTERM (a cluster's time limit, ``kill``) with its ``SIGTERMException``, a
    ``SystemExit`` of status 0; here it exits with 143, the shell's status for SIGTERM, so that a
    job scheduler or a ``&&`` chain does not take the run for finished.
    """
    try:
        yield
    except KeyboardInterrupt:
        _print_hint(hint)
        sys.exit(130)
    except SystemExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            _print_hint(hint)
        if type(exc).__name__ == "SIGTERMException":  # lightning.pytorch.utilities.exceptions, imported by then
            _print_hint(hint)
            sys.exit(143)
        raise


def _print_hint(hint: Callable[[], str]) -> None:
    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP's other ranks, which Lightning started, say nothing
        print(hint(), file=sys.__stderr__)  # the console: an interrupted sweep job never handed it back (JobConsole)


@contextmanager
def ddp_children_join_this_job(script: str) -> Iterator[None]:
    """Points Lightning's DDP re-launch at this job's config and folder for the duration of the job.

    Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the script again with
    ``sys.argv`` plus ``hydra.run.dir=<run.dir>``. In a multirun that re-runs the whole sweep
    (``-m`` and the comma lists are in ``sys.argv``), ``run.dir`` is not the job's folder, and
    in a submitit job ``sys.argv`` is submitit's runner. Here the children instead compose the
    job's saved ``.hydra/config.yaml`` (the exact task config) and run in the job's own folder,
    where Hydra writes nothing but their log.

    Args:
        script: Path of the entry script the children run (``__file__`` of ``scripts/train.py``).
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    import __main__

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    saved = output_dir / str(hydra_cfg.output_subdir) / "config.yaml"
    if "LOCAL_RANK" in os.environ or hydra_cfg.output_subdir is None or not saved.is_file():
        yield  # a child itself, or nothing saved to rebuild from: Lightning's default
        return
    argv, env, spec = list(sys.argv), dict(os.environ), __main__.__spec__
    sys.argv[:] = [str(Path(script).resolve()), "--config-path", str(saved.parent), "--config-name", "config"]
    # Lightning runs `python -m <__main__.__spec__.name>` when set: in a submitit job that is submitit's runner.
    __main__.__spec__ = None
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(output_dir)  # Lightning appends hydra.run.dir=<this>
    try:
        yield
    finally:
        sys.argv[:] = argv
        __main__.__spec__ = spec
        _end_process_group()
        # Lightning exported LOCAL_RANK, MASTER_PORT, ... for its children: left set, the next DDP job
        # of a sweep would take itself for a child and wait for ranks that never come.
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)


def _end_process_group() -> None:
    # The next DDP job of a sweep would otherwise reuse this group, whose other ranks have exited.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class JobConsole:
    """Sends a sweep job's console output (log lines, prints, warnings, progress bars) into its log file only.

    A sweep's console then holds one line per job; ``restore`` brings the console back.
    """

    def __init__(self, output_dir: Path, fallback_name: str) -> None:
        root = logging.getLogger()
        files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        self.path = Path(files[0].baseFilename) if files else output_dir / f"{fallback_name}.log"
        self.removed = [h for h in root.handlers if type(h) is logging.StreamHandler]  # the console handlers
        for handler in self.removed:
            root.removeHandler(handler)
        self.streams = sys.stdout, sys.stderr
        self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in restore()
        sys.stdout = sys.stderr = self.file

    def restore(self) -> None:
        sys.stdout, sys.stderr = self.streams
        self.file.close()
        for handler in self.removed:
            logging.getLogger().addHandler(handler)


def pin_gpu(gpu: str) -> None:
    """Makes ``gpu`` the only GPU this sweep worker sees; call it before CUDA starts."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def stop_server_on_signals() -> None:
    """Makes Ctrl+C and ``kill`` shut the server down once, quietly, from its main process.

    A terminal's Ctrl+C reaches every process of the group, and LitServe's children each printed a
    traceback: the processes it forks (its manager, uvicorn) inherit this handler and leave the
    shutdown to the main process; its spawned inference workers ignore Ctrl+C from their start
    (``ignore_interrupts_in_worker``). A second signal during the shutdown is ignored, as Lightning does.
    """
    main = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main:  # a forked child: the main process stops it
            if signum == signal.SIGTERM:  # sent to it alone: end as SIGTERM would
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def ignore_interrupts_in_worker() -> None:
    """In a process multiprocessing started (LitServe's inference worker): Ctrl+C is for the main process."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
