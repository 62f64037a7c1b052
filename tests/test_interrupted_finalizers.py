"""A Ctrl-C that lands in a finalizer prints no "Exception ignored ... Traceback"; other such exceptions still do."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from mnistlab.process.startup import quiet_interrupted_finalizers

class Finalized:
    def __init__(self, error):
        self.error = error

    def __del__(self):
        raise self.error

if sys.argv[1] == "quiet":
    quiet_interrupted_finalizers()
Finalized(KeyboardInterrupt())  # collected at once: Python ignores the exception and reports it
Finalized(ValueError("a real fault"))
print("went on")
"""


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_in_a_finalizer_prints_no_traceback() -> None:
    plain, quiet = run("plain"), run("quiet")
    assert plain.stdout == quiet.stdout == "went on\n"
    assert plain.stderr.count("Traceback") == 2 and "KeyboardInterrupt" in plain.stderr  # Python's own report
    assert quiet.stderr.count("Traceback") == 1 and "KeyboardInterrupt" not in quiet.stderr
    assert "ValueError: a real fault" in quiet.stderr
