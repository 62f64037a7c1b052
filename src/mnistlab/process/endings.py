"""How a process ends: a user's error in one line, the line that continues an interrupted run, a server's signals."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


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
def hint_on_interrupt(hint: Callable[[], str], discard: bool = False) -> Iterator[None]:
    """After a Ctrl-C or a SIGTERM, prints ``hint()`` (what to run to continue) on rank 0: a run's, or a sweep's.

    Lightning catches the ``KeyboardInterrupt`` inside ``trainer.fit``, shuts down and exits with 1;
    that exit keeps its status (in a sweep's sequential job too, which ends the sweep). One outside
    the fit (while the data loads, or under joblib while the sweep waits for its workers) ends the
    process with 130, the shell's status for SIGINT, instead of a traceback. Lightning ends a fit
    that received SIGTERM (a cluster's time limit, ``kill``) with its ``SIGTERMException``, a
    ``SystemExit`` of status 0; here it exits with 143, the shell's status for SIGTERM, so that a
    job scheduler or a ``&&`` chain does not take the run for finished.

    A sweep's process enters it as the sweep begins (its jobs may run in other processes, which alone
    call ``configure_job``): from here a Ctrl-C is no longer one during start-up.

    ``discard``: the command's run folder goes too (``evaluate.py``'s report, half-written: no metrics).
    """
    from mnistlab.process.startup import started

    started()
    previous = _terminate_outside_lightning()
    try:
        yield
    except KeyboardInterrupt:
        _print_hint(hint, discard)
        sys.exit(130)
    except SystemExit as exc:
        if isinstance(exc, Terminated) or type(exc).__name__ == "SIGTERMException":  # Lightning's, imported by then
            _print_hint(hint, discard)
            sys.exit(143)
        if isinstance(exc.__context__, KeyboardInterrupt):
            _print_hint(hint, discard)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(SystemExit):
    """A SIGTERM outside Lightning's fit or test (the data's preparation, between the fit and the test, the report)."""


def _raise_terminated(signum: int, frame: object) -> None:
    # Lightning's handler, while it runs a fit or a test, calls this one too (it keeps a handler it finds): it stops
    # the run at a step's end itself, with last.ckpt saved, so this one leaves the signal to it.
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        raise Terminated(143)


def _terminate_outside_lightning() -> Any:
    """Makes a SIGTERM outside Lightning's loops end with the continue line and 143, as one inside them does: the
    default handler ended the process without a word. Returns the handler to restore, None where none was set."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not (
        signal.SIG_DFL
    ):
        return None  # a thread cannot set it; a handler of someone else's (a server's, an outer sweep's) stays
    signal.signal(signal.SIGTERM, _raise_terminated)
    return signal.SIG_DFL


def _print_hint(hint: Callable[[], str], whole: bool = False) -> None:
    from mnistlab.run_folders import discard_run_dir

    if os.environ.get("LOCAL_RANK", "0") == "0":  # DDP's other ranks, which Lightning started, say nothing
        # Stopped before it wrote anything of its own (or, whole, a half-written report): no such folder stays.
        discard_run_dir(whole=whole)
        print(hint(), file=sys.__stderr__)  # the console: an interrupted sweep job never handed it back (JobConsole)


@contextmanager
def stop_server_on_signals() -> Iterator[None]:
    """Makes Ctrl+C and ``kill`` shut the server served in its body down once, quietly, from its main process.

    A terminal's Ctrl+C reaches every process of the group, and LitServe's children each printed a
    traceback: the processes it forks (its manager, uvicorn) inherit this handler and leave the
    shutdown to the main process; its spawned inference workers ignore Ctrl+C from their start
    (``ignore_interrupts_in_worker``). A second signal during the shutdown is ignored, as Lightning does.

    LitServe takes the ``KeyboardInterrupt`` that starts its shutdown and returns: after a Ctrl+C it is
    raised again here, so that the script's ``hint_on_interrupt`` ends the process as every script does
    (one line, status 130). A SIGTERM, how a service manager stops a server, is its orderly end: status 0.
    """
    main = os.getpid()
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main:  # a forked child: the main process stops it
            if signum == signal.SIGTERM:  # sent to it alone: end as SIGTERM would
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        received.append(signum)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt:
        if received != [signal.SIGTERM]:
            raise
    if received == [signal.SIGINT]:
        raise KeyboardInterrupt


def ignore_interrupts_in_worker() -> None:
    """In a process multiprocessing started (LitServe's inference worker): Ctrl+C is for the main process."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
