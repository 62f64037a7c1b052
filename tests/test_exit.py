"""Exiting without the final garbage collection keeps what exit promises: handlers, buffers, status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import atexit, gc, sys
from pathlib import Path
import lightning  # the objects whose final collection is skipped
from mnistlab.process.startup import skip_final_collection

skip_final_collection()
out = Path(sys.argv[1])
atexit.register(lambda: (out / "handler").write_text(str(gc.isenabled())))  # a logger's last flush, say
log = open(out / "buffered", "w")  # never closed nor flushed by the program
log.write("last line\\n")
print("stdout line", end="")  # no newline: only the exit flushes it
sys.exit(3)
"""


def test_exit_handlers_buffers_and_status_survive(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "stdout line"
    assert (tmp_path / "handler").read_text() == "True"  # ran before the freeze, collector still on
    assert (tmp_path / "buffered").read_text() == "last line\n"
    assert "Exception ignored" not in proc.stderr


def test_a_sigterm_during_a_ctrl_c_shutdown_prints_the_continue_hint_once(monkeypatch) -> None:
    import pytest
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mnistlab.process import hint_on_interrupt

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    hints: list[str] = []
    with pytest.raises(SystemExit) as ended, hint_on_interrupt(lambda: hints.append("hint") or "hint"):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SIGTERMException(0) from None  # from None keeps __context__: the Ctrl-C it interrupted
    assert ended.value.code == 143 and hints == ["hint"]


CTRL_C = """
import os, signal, sys, time
from mnistlab import process

process.setup()  # what every entry script runs first
if sys.argv[1] == "job":
    process.configure_job()  # the job starts: Ctrl-C is Lightning's and the scripts' again
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
except KeyboardInterrupt:
    print("KeyboardInterrupt reached the job")
"""


def test_ctrl_c_while_starting_is_one_line_and_the_jobs_own_after() -> None:
    starting = subprocess.run([sys.executable, "-c", CTRL_C, "start"], capture_output=True, text=True, timeout=120)
    assert starting.returncode == 130
    assert starting.stderr.strip() == "interrupted while starting: nothing was run"  # no traceback
    job = subprocess.run([sys.executable, "-c", CTRL_C, "job"], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert job.stdout.strip() == "KeyboardInterrupt reached the job"
