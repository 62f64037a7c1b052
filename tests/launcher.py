"""Runs the project's scripts for the tests as forks of a process that has imported torch and Lightning once.

``python scripts/train.py ...`` spends about 6 s of a 2-core machine importing torch and Lightning before its
first check, and the suite launches several hundred scripts, most of them refused or done within a second of
that. Here each test process (xdist worker) starts one server, ``python tests/launcher.py``, which imports
``PRELOADED`` and then forks once per launch. The child takes the launch's working folder, environment,
``sys.argv``, ``sys.path[0]`` and standard streams, runs the script as ``__main__`` (``runpy``), and leaves
through the interpreter's own exit (atexit handlers, thread joins, stream flushes) with the script's exit code,
as ``python script.py`` would.

What a fork cannot give, a launch gets from a plain subprocess: a program that is not a script file (``-c``,
``-m``), or an environment that differs from the server's in a variable other than those of ``LATE_VARIABLES``
(torch reads ``OMP_NUM_THREADS`` when imported; ``PYTHONPATH`` may bring a ``sitecustomize`` that Python runs
first). The preloaded imports themselves print nothing (none warns), so no output is lost to the server. A test of
what happens while a script imports (a Ctrl-C during start-up) launches its own subprocess.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# What every script imports sooner or later, and what takes the time (import lightning: 4 s on a CI machine).
PRELOADED = ("torch", "lightning.pytorch", "torchmetrics", "hydra", "mnistlab.training", "mnistlab.evaluation")
# Variables read when a script runs, not when PRELOADED is imported, so a launch may set them. Tests that run
# in the test process leave some for the launches after them, as they would for a subprocess: pytest's
# PYTEST_CURRENT_TEST, seed_everything's PL_GLOBAL_SEED (Lightning reads its PL_* in functions only), MLflow's
# (not preloaded). Lightning sets the NVML one when imported; torch reads it at each CUDA check.
LATE_VARIABLES = ("MNISTLAB_", "PYTEST_", "PL_", "MLFLOW_", "_MLFLOW_", "PYTORCH_NVML_BASED_CUDA_CHECK")


def _serve() -> dict[str, Any] | None:
    """The server's loop: one fork per request line on stdin; "started PID" and "exited PID CODE" on stdout.

    Returns:
        In a forked child, its request (the caller runs the script); in the server, None once stdin closes.
    """
    launch_env = dict(os.environ)
    for name in PRELOADED:
        importlib.import_module(name)
    os.write(1, b"ready\n")
    pending = b""
    while True:
        if select.select([0], [], [], 0.02)[0]:
            data = os.read(0, 1 << 16)
            if not data:  # the test process ended: its launches end with it or go on as orphans
                return None
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _become(request, launch_env)
                    return request
                os.write(1, f"started {pid}\n".encode())
        while True:  # reap every child that has ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            os.write(1, f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def _become(request: dict[str, Any], launch_env: dict[str, str]) -> None:
    """Turns a forked child into the launch of ``request``: folder, environment, streams, argv."""
    os.chdir(request["cwd"])
    # Only what the launch changes against the server's start: what the imports set (Lightning's NVML variable) stays.
    wanted = request["env"]
    for key in set(wanted) | set(launch_env):
        if wanted.get(key) != launch_env.get(key):
            if key in wanted:
                os.environ[key] = wanted[key]
            else:
                os.environ.pop(key, None)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT)):
        stream = os.open(path, flags)
        os.dup2(stream, fd)
        os.close(stream)
    if request["stderr"] is None:  # merged: one file description, so the two streams do not overwrite each other
        os.dup2(1, 2)
    else:
        stream = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT)
        os.dup2(stream, 2)
        os.close(stream)
    sys.argv = [request["script"], *request["args"]]
    sys.path[0] = str(Path(request["script"]).resolve().parent)  # as Python puts a script's folder first


class _Server:
    """A test process's handle on its server; thread-safe (tests launch table rows from a thread pool)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=Path(__file__).parent,
        )
        self.lock = threading.Lock()
        self.exited: dict[int, int] = {}
        self.buffer = b""
        line = self._line(timeout=300)
        assert line == "ready", f"the script launcher did not start: {line!r}"

    def _line(self, timeout: float) -> str | None:
        """The server's next line (the lock held), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                return None
            data = os.read(self.process.stdout.fileno(), 1 << 16)
            assert data, f"the script launcher ended (exit code {self.process.poll()})"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def _take(self, line: str) -> int | None:
        """Records an "exited" line; returns the pid of a "started" one."""
        kind, pid, *code = line.split()
        if kind == "exited":
            self.exited[int(pid)] = int(code[0])
            return None
        return int(pid)

    def start(self, request: dict[str, Any]) -> int:
        with self.lock:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            while True:
                line = self._line(timeout=60)
                assert line is not None, "the script launcher did not answer"
                if (pid := self._take(line)) is not None:
                    return pid

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of ``pid`` (negative: the signal that ended it), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if pid in self.exited:
                    return self.exited.pop(pid)
                if (line := self._line(timeout=min(0.1, max(deadline - time.monotonic(), 0)))) is not None:
                    self._take(line)
                    continue
            if time.monotonic() >= deadline:
                return None


_servers: dict[int, _Server] = {}
_servers_lock = threading.Lock()


def _server(env: dict[str, str]) -> _Server | None:
    """This test process's server, started at the first launch with ``env``; None where ``env`` needs a new process."""
    with _servers_lock:
        server = _servers.get(os.getpid())
        if server is None:  # not a PYTHONPATH the first launch brings (a user's code): every later launch would differ
            server = _servers[os.getpid()] = _Server({k: v for k, v in env.items() if k != "PYTHONPATH"})
    differs = {k for k in set(env) | set(server.env) if env.get(k) != server.env.get(k)}
    return server if all(k.startswith(LATE_VARIABLES) for k in differs) else None


def run_python(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float, merge_stderr: bool = False
) -> subprocess.CompletedProcess:
    """What ``subprocess.run([sys.executable, *args], capture_output=True, text=True)`` gives, for a script file.

    Args:
        args: The script's path, then its arguments; anything else (``-c``, ``-m``) runs as a plain subprocess.
        cwd: The working folder.
        env: The whole environment.
        timeout: Seconds before the launch is killed and ``subprocess.TimeoutExpired`` raised.
        merge_stderr: Standard error into standard output, as ``stderr=subprocess.STDOUT``.
    """
    command = [sys.executable, *args]
    script = Path(cwd, args[0]).resolve() if args else None  # relative to the launch's folder, as Python reads it
    server = _server(env) if script and script.suffix == ".py" and script.is_file() else None
    if server is None:
        stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
        return subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                              timeout=timeout)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="launch-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        request = {"script": args[0], "args": args[1:], "cwd": str(cwd), "env": env, "stdout": str(out),
                   "stderr": None if merge_stderr else str(err)}  # fmt: skip
        pid = server.start(request)
        code = server.wait(pid, timeout)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            server.wait(pid, 60)
            raise subprocess.TimeoutExpired(command, timeout, out.read_text(errors="replace"))
        # Read as text=True reads a pipe: universal newlines (a progress bar's \r becomes \n), the locale's encoding.
        stdout = out.read_text()
        stderr = None if merge_stderr else err.read_text()
        return subprocess.CompletedProcess(command, code, stdout, stderr)


if __name__ == "__main__":
    launch = _serve()
    if launch is not None:  # a forked child: the script, as `python script.py` runs it
        runpy.run_path(os.path.abspath(launch["script"]), run_name="__main__")  # __file__ absolute, as Python's
