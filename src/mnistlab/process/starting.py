"""A Ctrl-C while a script starts: one line and status 130, not a traceback; the scripts' first statement sets it.

Until the handler is set, Python's own raises ``KeyboardInterrupt`` and prints a traceback, so it is set after
as little work as there is: this module imports ``signal`` and ``sys`` alone, and its package
loads its other modules only when a script asks for them (``mnistlab.process.__getattr__``). Before, the first
statement loaded all of them, with ``logging``, ``re``, ``ctypes`` and ``threading``: some 30 ms in which a
Ctrl-C printed a traceback. What comes before the script's first statement (Python's start, its ``site``
imports, compiling the script), some 10 ms, is out of any script's reach."""

from __future__ import annotations

import signal
import sys


def interrupts_while_starting() -> None:
    """Makes a Ctrl-C a quiet exit, one line and status 130, until the job starts (``startup.started``).

    An entry script calls it first, under ``__main__`` and before its own imports (Hydra's and mnistlab's,
    a second or more on a busy machine): a Ctrl-C there printed a traceback through importlib, and the
    process died of SIGINT. It imports nothing and only sets the signal handler.
    """
    try:  # noqa: SIM105 - contextlib.suppress: its import is 2-3 ms more before the handler is set
        signal.signal(signal.SIGINT, exit_while_starting)
    except ValueError:  # off the main thread: signal handlers are the main thread's alone
        pass


def exit_while_starting(signum: int, frame: object) -> None:
    """The handler: the folder Hydra made for the job goes, one line, exit 130.

    A Ctrl-C during the script's imports, the command-line check, Hydra's composition or ``configure_job``:
    nothing has run, nothing is to be saved, and a traceback through importlib would say nothing. The folder
    Hydra made for the job holds its records alone. ``configure_job`` hands Ctrl-C back as it ends.
    """
    # No import here: during the script's imports one could meet a module the interrupted import left half
    # made; and until setup() imported run_folders, no folder was made.
    folders = sys.modules.get("mnistlab.run_folders")
    if (discard_run_dir := getattr(folders, "discard_run_dir", None)) is not None:
        discard_run_dir()
    print("interrupted while starting: nothing was run", file=sys.stderr)
    raise SystemExit(130)
