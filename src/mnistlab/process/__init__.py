"""Process setup: every process-wide setting mnistlab makes, each with its reason, for the entry scripts.

``starting.py`` is the scripts' first statement, ``startup.py`` sets what a process and a job start with,
``endings.py`` how a process ends (a user's error, Ctrl-C, SIGTERM, a server's signals), ``jobs.py`` what a
job changes for its own duration (DDP's re-launch, a sweep job's console and GPU). The entry scripts' calls
are named here.

Library code changes no process-wide state; the entry scripts (``scripts/*.py``, the benchmarks
that train) call these, and the sweep plugin's callbacks, which Hydra runs in the job's process,
use ``JobConsole`` and ``pin_gpu`` (and ``configure_job`` before the folds' ensemble is tested in the
sweep's process; the sweepers ``hint_on_interrupt``; the grid sweeper's check of its jobs,
``checking_sweep_jobs``). What is set, and why:

- ``interrupts_while_starting``, the scripts' first statement, before their imports: a Ctrl-C until the job
  starts exits with one line and 130, not a traceback (``setup`` sets it too, for other callers).
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
  - the progress bars' lock, a thread lock: tqdm's default adds a semaphore that a joblib worker stopped
    by Ctrl-C leaves behind, and Python's resource tracker then warns of it after the sweep's last line.
  - the ``gc.freeze`` exit hook of ``setup`` in a parallel launcher's worker, which never ran ``setup``.
  - glibc's malloc keeps freed tensor memory for reuse (``keep_freed_memory``): a CNN epoch spent a
    sixth of its time in the kernel, mapping and unmapping its activations.
- ``exit_on_user_error``: a user error ends the process with one line and exit status 2.
- ``hint_on_interrupt``: after a Ctrl-C or a SIGTERM, the line that continues the run (exit 130 or 143).
- ``ddp_children_join_this_job``: ``sys.argv``, ``__main__.__spec__`` and the environment for
  Lightning's DDP re-launch, restored after the job.
- ``JobConsole``: ``sys.stdout``/``sys.stderr`` and the root logger's console handlers of a sweep job.
- ``pin_gpu``: ``CUDA_VISIBLE_DEVICES`` of a sweep worker.
- ``checking_sweep_jobs``: while the grid sweeper checks its jobs' settings before the first job
  (``mnistlab.sweeps.shared_refusal``), Hydra's config is each checked job's, the log below ``WARNING`` and
  warnings are quiet, and the seed variables that the check's ``compose`` sets are restored after it.
- ``stop_server_on_signals``: Ctrl+C and SIGTERM stop the server once, from its main process, without
  tracebacks from LitServe's children (a Ctrl+C then ends it as every script: ``interrupted``, 130);
  ``ignore_interrupts_in_worker`` in its inference workers.
"""

from mnistlab.process.starting import interrupts_while_starting

# The rest is loaded when a script first asks for it: the scripts' first statement, which sets the handler of a
# Ctrl-C while starting, loads ``starting`` alone (see there).
_MODULES = {
    "configure_job": "startup",
    "ddp_children_join_this_job": "jobs",
    "exit_on_user_error": "endings",
    "hint_on_interrupt": "endings",
    "ignore_interrupts_in_worker": "endings",
    "setup": "startup",
    "stop_server_on_signals": "endings",
}

__all__ = ["interrupts_while_starting", *_MODULES]


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
