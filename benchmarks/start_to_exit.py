"""Launch to exit of ``scripts/train.py experiment=notebook_hidden`` against the Keras notebook program.

    python benchmarks/start_to_exit.py [--runs 3] [--keras-python PYTHON]

Runs the two programs alternately (so that a busy spell hits both), each in a fresh interpreter
and a fresh folder, and prints the medians, their ratio and where mnistlab's time goes. The
breakdown is read from the moments the run's own output lines appear, so the run is unchanged:

- import + config: launch to Lightning's "GPU available" line (Python, torch, Lightning, Hydra's
  composition and the Trainer);
- data + build: to the model summary (the data module's setup reads MNIST);
- fit: to Lightning's "Trainer.fit stopped" line;
- test + report: to mnistlab's closing ``test/acc`` line (test, figures, files, HParams);
- exit: to the end of the process (interpreter teardown, the logger's last flush).

``--keras-python`` is an interpreter with TensorFlow (``pip install -e ".[keras-baseline]"``);
without it only mnistlab is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (phase, the output line that ends it); None: the process's exit.
MARKS = (
    ("import + config", "GPU available:"),
    ("data + build", "| Name"),
    ("fit", "`Trainer.fit` stopped"),
    ("test + report", "test/acc "),
    ("exit", None),
)


def data_dir() -> Path:
    """Where ``scripts/train.py`` (run from the repository) reads MNIST: conf/paths/default.yaml's rule."""
    return Path(os.environ.get("MNISTLAB_DATA_DIR", ROOT / "data"))


def timed(command: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]]]:
    """Runs ``command``; returns its seconds from spawn to exit and each output line with its time."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    lines = []
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:  # progress bars redraw with \r: only whole lines count
            lines.append((time.perf_counter() - start, raw.decode(errors="replace")))
    total = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited with {proc.returncode}:\n{''.join(t for _, t in lines[-20:])}")
    return total, lines


def phases(total: float, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds of each phase of ``MARKS``, from the time each marking line appeared."""
    out, previous = {}, 0.0
    for name, mark in MARKS:
        at = total if mark is None else next((t for t, text in lines if mark in text), None)
        if at is None:
            sys.exit(f"error: no line with {mark!r} in the run's output: has the output changed?")
        out[name], previous = at - previous, at
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each program (default 3)")
    parser.add_argument("--keras-python", help="a Python with TensorFlow, for the Keras baseline")
    args = parser.parse_args()
    mnistlab, keras, breakdowns = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            run_dir = Path(tmp) / f"mnistlab{i}"
            command = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=notebook_hidden"]
            total, lines = timed([*command, f"hydra.run.dir={run_dir}"], ROOT)
            mnistlab.append(total)
            breakdowns.append(phases(total, lines))
            print(f"run {i + 1}: mnistlab {total:.2f} s", end="", flush=True)
            if args.keras_python:
                keras_dir = Path(tmp) / f"keras{i}"
                keras_dir.mkdir()
                script = str(ROOT / "benchmarks" / "keras_notebook.py")
                keras.append(timed([args.keras_python, script, str(data_dir() / "mnist")], keras_dir)[0])
                print(f", Keras {keras[-1]:.2f} s", end="")
            print()
    median = statistics.median(mnistlab)
    each = " ".join(f"{t:.2f}" for t in mnistlab)
    print(f"\nmnistlab, launch to exit: {median:.2f} s (median of {args.runs}: {each})")
    if keras:
        print(f"Keras notebook program: {statistics.median(keras):.2f} s ({' '.join(f'{t:.2f}' for t in keras)})")
        print(f"ratio mnistlab / Keras: {median / statistics.median(keras):.2f}x")
    print("\nmnistlab's breakdown (medians):")
    for name, _ in MARKS:
        seconds = statistics.median(b[name] for b in breakdowns)
        print(f"  {name:<16} {seconds:6.2f} s  {seconds / median:5.1%}")


if __name__ == "__main__":
    main()
