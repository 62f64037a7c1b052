"""The chaos test's kill switch: SIGKILLs a sweep at a named moment, as a preempted machine would.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; tests/test_chaos.py puts this folder
there, with ``CHAOS_KILL`` set, for the sweep it means to kill only. Nothing in mnistlab knows about it:
the moments are found from outside, by wrapping what the sweep calls.

``CHAOS_KILL`` is ``<moment>:<job>[:<n>]``:

- ``startup:J``: job J starts its fit (``mnistlab.training.fit_and_test``, after Hydra made its folder; not the
  sweep's check of job J's settings before the first job, which runs the same checks in the sweep's process).
- ``step:J:N``: right after job J's Nth optimizer step.
- ``checkpoint:J:N``: inside job J's Nth write of ``last.ckpt``: its temp file written, not yet renamed.
- ``after_job:J``: job J has ended and recorded it (``job.json``); the next job has not started.
- ``summary:-1``: the sweep's ``summary.csv`` is written, ``summary.md`` not yet.

The whole process group goes (the sweep and its joblib workers), as when a scheduler preempts a job.
``CHAOS_SIGNAL=INT`` sends SIGINT instead, as a Ctrl-C in the terminal does. ``CHAOS_SCOPE=process``
kills the process of the moment alone, as the system's out-of-memory killer takes one joblib worker.
"""

from __future__ import annotations

import os
import signal
import sys

SPEC = os.environ.get("CHAOS_KILL", "")
SIGNAL = "SIG" + os.environ.get("CHAOS_SIGNAL", "KILL")
ALONE = os.environ.get("CHAOS_SCOPE") == "process"


def _job() -> int:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num) if HydraConfig.initialized() else -1


def _kill(moment: str) -> None:
    # The process's own stderr: a sweep job's sys.stderr goes to its log file.
    print(f"chaos: {SIGNAL} {moment}", file=sys.__stderr__, flush=True)
    if ALONE:
        os.kill(os.getpid(), getattr(signal, SIGNAL))
    else:
        os.killpg(os.getpgrp(), getattr(signal, SIGNAL))


def _install(moment: str, job: int, n: int) -> None:
    counts: dict[int, int] = {}

    def count() -> int:
        counts[_job()] = counts.get(_job(), 0) + 1
        return counts[_job()]

    if moment == "startup":
        import mnistlab.training

        original = mnistlab.training.fit_and_test

        def fit_and_test(*args, **kwargs):
            if _job() == job:
                _kill(f"in job {job}'s start-up")
            return original(*args, **kwargs)

        mnistlab.training.fit_and_test = fit_and_test
    elif moment == "step":
        from torch.optim.optimizer import register_optimizer_step_post_hook

        def after_step(optimizer, args, kwargs) -> None:
            if _job() == job and count() == n:
                _kill(f"mid-epoch, after job {job}'s optimizer step {n}")

        register_optimizer_step_post_hook(after_step)
    else:
        replace = os.replace

        def chaotic_replace(src, dst, *args, **kwargs):
            name = os.path.basename(dst)
            if moment == "checkpoint" and name == "last.ckpt" and _job() == job and count() == n:
                _kill(f"inside job {job}'s checkpoint write {n} (temp file written, not renamed)")
            replace(src, dst, *args, **kwargs)
            if moment == "after_job" and name == "job.json" and _job() == job:
                _kill(f"between jobs {job} and {job + 1}")
            if moment == "summary" and name == "summary.csv":
                _kill("during the summary write (summary.csv written, summary.md not)")

        os.replace = chaotic_replace


if SPEC:
    moment, job, *n = SPEC.split(":")
    _install(moment, int(job), int(n[0]) if n else 1)
