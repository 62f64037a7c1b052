"""Every command of the README and docs/ runs as shown (with short-run settings appended).

Convention (stated in the README): each ``python scripts/...`` line of a ```` ```bash ```` block is run,
in a fresh working directory, with the settings of ``short_run`` appended so that it takes seconds.
A line whose comment says ``on a GPU`` or ``N GPUs`` runs only where there are that many GPUs.
```` ```sh ```` blocks (installs, TensorBoard, clusters, profiling) are not run.
The example run folder ``outputs/2026-11-25/12-12-40`` is made first, by a short training run;
``...`` stands for it and ``/elsewhere/mnist`` for the real data folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, ROOT
from PIL import Image

from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_RUN = "outputs/2026-11-25/12-12-40"
QUICK = ["trainer.limit_train_batches=2", "callbacks.progress_bar.refresh_rate=0"]
# The order commands run in: a model exists before it is exported, exported before it is predicted with.
PHASES = {"train.py": 0, "export.py": 0, "evaluate.py": 1, "predict.py": 1, "benchmark.py": 1}


def documented_commands() -> list[tuple[str, list[str], int]]:
    """(where, argv after ``python``, GPUs needed) of every ``python scripts|benchmarks/...`` line of a bash block."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not line.startswith(("python scripts/", "python benchmarks/")):
                    continue
                comment = line.split("#", 1)[1] if "  #" in line else ""
                gpus = re.search(r"\bon a GPU\b|\b(\d+) GPUs\b", comment)
                need = 0 if gpus is None else int(gpus.group(1) or 1)
                found.append(
                    (f"{doc.name}: {line.split('  #')[0].strip()}", shlex.split(line, comments=True)[1:], need)
                )
    return found


def short_run(args: list[str], index: int) -> list[str]:
    """The command's own arguments with placeholders filled, then settings that make it short."""
    filled = []
    for arg in args:
        arg = arg.replace(".../", f"{EXAMPLE_RUN}/checkpoints/").replace("/elsewhere/mnist", str(DATA_DIR / "mnist"))
        filled.append(f"{arg.split('=')[0]}={EXAMPLE_RUN}" if arg.endswith("=...") else arg)
    script = Path(filled[0]).name
    if script == "benchmark.py":
        extra = ["epochs=1", "warmup=0", "data.batch_size=5500"]  # 10 optimizer steps per epoch
        return filled + extra + (["startup_runs=1"] if any(a.startswith("startup_runs=") for a in filled) else [])
    if script != "train.py":
        return filled
    epochs = 2 if any(a.startswith("ckpt_path=") for a in filled) else 1  # continuing: one epoch more
    extra = [f"trainer.max_epochs={epochs}", *QUICK]
    if "-m" not in filled:  # two runs started in the same second would share Hydra's default run folder
        extra.append(f"hydra.run.dir=outputs/docs-{index}")
    if "-m" in filled:
        extra.append(f"hydra.sweep.dir=multirun/docs-{index}")
        if "hparams_search=optuna" in filled:
            extra.append("hydra.sweeper.n_trials=2")
    return filled + extra


def run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return done, time.perf_counter() - start


def prepare(cwd: Path) -> None:
    """The example run folder, and the image files the Predict section names."""
    result, _ = run(
        [str(ROOT / "scripts" / "train.py"), *QUICK, "trainer.max_epochs=1", f"hydra.run.dir={EXAMPLE_RUN}"], cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images, _ = load_split(DATA_DIR / "mnist", MNIST, train=False)
    (cwd / "digits").mkdir()
    Image.fromarray(images[998].numpy()).save(cwd / "digits" / "eight.png")
    Image.fromarray(255 - images[998].numpy()).save(cwd / "digits" / "eight_on_paper.png")
    seven = np.kron(255 - images[0].numpy(), np.ones((5, 5), np.uint8))  # dark on a light page, enlarged
    Image.fromarray(seven).convert("RGB").save(cwd / "my_digit.jpg", quality=80)


def test_table_of_commands_covers_every_script() -> None:
    scripts = {Path(args[0]).name for _, args, _ in documented_commands()}
    assert {"train.py", "evaluate.py", "predict.py", "export.py", "benchmark.py"} <= scripts


@pytest.mark.slow
def test_every_documented_command_runs(tmp_path: Path) -> None:
    # The scripts are run by path from the repository, in a working directory of their own.
    commands = [
        (where, [str(ROOT / a) if a.startswith(("scripts/", "benchmarks/")) else a for a in args], need)
        for where, args, need in documented_commands()
    ]
    prepare(tmp_path)
    gpus = torch.cuda.device_count()
    runnable, seen = {}, set()
    for index, (where, args, need) in enumerate(commands):
        if need <= gpus and shlex.join(args) not in seen:  # a command shown twice, on any page, runs once
            seen.add(shlex.join(args))
            runnable[where] = short_run(args, index)
    failures, timings = [], []
    for phase in sorted(set(PHASES.values())):
        batch = [(w, a) for w, a in runnable.items() if PHASES[Path(a[0]).name] == phase]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for (where, args), (result, seconds) in zip(
                batch, pool.map(lambda c: run(c[1], tmp_path), batch), strict=True
            ):
                timings.append(f"{seconds:6.1f} s  {where}")
                output = result.stdout + result.stderr
                if result.returncode != 0 or "Traceback" in output:
                    failures.append(f"{where}\n  ran: {shlex.join(args)}\n{output[-1500:]}")
    print("\n".join(timings))
    assert not failures, "\n\n".join(failures)
