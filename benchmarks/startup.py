"""Start-up time: launch of ``scripts/train.py`` to its first training step, in fresh interpreters.

The yardstick is ``python -c "import lightning"``: both are timed from just before the process
is spawned, so both include the interpreter's own start.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl

FIRST_STEP = "mnistlab-first-step"


class FirstStepProbe(pl.Callback):
    """Prints the wall-clock time of the first training batch and ends the process at once.

    Only for start-up timing: nothing after the first step (checkpoints, test) is wanted.
    """

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        print(f"{FIRST_STEP} {time.time()!r}", flush=True)
        os._exit(0)


def time_import_lightning() -> float:
    """Seconds from spawning ``python -c "import lightning"`` to its exit."""
    start = time.time()
    subprocess.run([sys.executable, "-c", "import lightning"], check=True)
    return time.time() - start


def time_first_step(train_script: Path, overrides: Sequence[str] = ()) -> float:
    """Seconds from spawning ``train_script`` with ``overrides`` to its first training step."""
    with tempfile.TemporaryDirectory() as run_dir:
        args = [
            sys.executable,
            str(train_script),
            *overrides,
            f"hydra.run.dir={run_dir}",
            f"+callbacks.first_step._target_={FirstStepProbe.__module__}.{FirstStepProbe.__name__}",
        ]
        # The probe lives beside this file, outside the package: the child imports it from here.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        }
        start = time.time()
        done = subprocess.run(args, capture_output=True, text=True, env=env)
    stamps = re.findall(rf"{FIRST_STEP} (\S+)", done.stdout)  # the progress bar shares stdout
    if not stamps:
        raise RuntimeError(f"{train_script} never reached a training step:\n{done.stderr[-2000:]}")
    return float(stamps[0]) - start


def startup_times(train_script: Path, runs: int, overrides: Sequence[str] = ()) -> dict[str, list[float] | float]:
    """Alternates both measurements ``runs`` times (so that load changes hit both alike).

    Returns:
        Every run of each, their medians and the ratio of the medians.
    """
    imports, first_steps = [], []
    for _ in range(runs):
        imports.append(time_import_lightning())
        first_steps.append(time_first_step(train_script, overrides))
    result: dict[str, list[float] | float] = {
        "import_lightning_s": imports,
        "first_step_s": first_steps,
        "import_lightning_median_s": statistics.median(imports),
        "first_step_median_s": statistics.median(first_steps),
    }
    result["ratio"] = result["first_step_median_s"] / result["import_lightning_median_s"]
    return result


def describe(result: dict[str, list[float] | float]) -> str:
    """One line for the console."""
    runs = len(result["first_step_s"])
    return (
        f"start-up: first training step {result['first_step_median_s']:.2f} s, `import lightning` "
        f"{result['import_lightning_median_s']:.2f} s (medians of {runs} runs), ratio {result['ratio']:.2f}x"
    )
