"""What a process and a job start with: resolvers, exit hooks, Ctrl-C at start, a quiet console, CUDA check, malloc."""

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
from typing import Any

from mnistlab import interrupts
from mnistlab.process.starting import exit_while_starting, interrupts_while_starting

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
    # A resume (resume=RUN, a killed sweep's job) saves into its run's checkpoints/, as it should; train.py refuses
    # a new run into a folder with checkpoints (resume.run.run_folder_mistake). A callback's own dirpath still warns.
    r"Checkpoint directory .*/checkpoints exists and is not empty",
    # A new run from another run's checkpoint (ckpt_path=) keeps its own best, as it should.
    r"The dirpath has changed from",
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

    interrupts_while_starting()  # the scripts called it already, before their imports; other callers did not
    quiet_interrupted_finalizers()
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
    from mnistlab.run_folders import eval_dir, new_folder, one_folder

    resolvers = {
        "mnistlab.eval_dir": eval_dir,
        "mnistlab.new_folder": new_folder,
        "mnistlab.one_folder": one_folder,
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


def started() -> None:
    """Hands Ctrl-C back (``KeyboardInterrupt``) once a job or a sweep begins; the script made it a quiet exit.

    During a fit that takes it (``mnistlab.interrupts``), a first Ctrl-C stops at the end of the training step
    it came in, with ``last.ckpt`` saved there: a Ctrl-C in a long epoch lost every step since the epoch began.
    """
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is exit_while_starting:
        signal.signal(signal.SIGINT, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    if not interrupts.request_stop():
        raise KeyboardInterrupt
    # Where it stops: a validation runs to its end first (mnistlab.callbacks.checkpoints), which may take a while;
    # so does the one that follows the step, and at the epoch's last step the epoch's end, whose validation and
    # last.ckpt are kept. Nothing here knows whether this step is such a one, so the line names both cases.
    where = (
        "once this validation ends"
        if interrupts.validating()
        else "at the end of this training step (if a validation or the epoch's end follows it: once they are done)"
    )
    # sys.__stderr__: a sweep's job writes sys.stderr into its log (JobConsole), the user is at the console.
    print(
        f"Ctrl-C: stopping {where}, with checkpoints/last.ckpt saved (Ctrl-C again: at once)",
        file=sys.__stderr__,
        flush=True,
    )


def configure_job() -> None:
    """A quiet console and a cheap CUDA check for the job about to run; idempotent.

    - Drops the warnings of ``IGNORED_WARNINGS``.
    - ``import lightning`` gives the ``lightning`` logger a console handler of its own, while
      Hydra's handler on the root logger prints the same records again: Hydra's (console and log
      file) is kept, so each line is printed once. Lightning's tips are filtered out.
    - ``skip_nvml_probe_without_driver``.
    - ``thread_lock_for_progress_bars``.
    - ``skip_final_collection``: a parallel launcher's worker (joblib) runs jobs without the script's
      ``setup``, and the sweep waits for its exit (about 1 s a worker without it).
    - Ctrl-C raises ``KeyboardInterrupt`` again (``setup`` made it a quiet exit while the process started):
      Lightning's graceful stop and the scripts' resume hint take it from here.
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
    quiet_interrupted_finalizers()
    thread_lock_for_progress_bars()
    skip_final_collection()
    keep_freed_memory()
    started()  # last: a Ctrl-C during `import lightning` (seconds on a busy machine) is one while starting


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


def thread_lock_for_progress_bars() -> None:
    """Gives Lightning's progress bars a thread lock instead of tqdm's default, which adds a process-shared semaphore.

    A parallel launcher's worker (joblib) that a Ctrl-C stops is killed before it can remove that
    semaphore, and Python's resource tracker then ends the sweep with "There appear to be 2 leaked
    semaphore objects". Only one process of a job draws bars (DDP's rank 0), so a thread lock is enough.
    """
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    Tqdm.set_lock(threading.RLock())  # a job's bars are drawn between jobs' runs, never across them


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


def quiet_interrupted_finalizers() -> None:
    """Keeps a Ctrl-C that lands in an object's finalizer from printing Python's "Exception ignored ... Traceback".

    A sweep's process waiting on joblib's workers collected a Lightning profiler (of the Trainer its check before
    the first job built) as the Ctrl-C came; its ``__del__`` took the ``KeyboardInterrupt``, which Python ignores
    there and prints, before the script's own line on how to continue. Other exceptions print as before.
    """
    default = sys.unraisablehook
    if getattr(default, "mnistlab", False):
        return

    def hook(unraisable: Any) -> None:
        if not (unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            default(unraisable)

    hook.mnistlab = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


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
