"""Shared fixtures: the real datasets in ../shared/data and tiny IDX files written on the fly."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from launcher import run_python

from mnistlab.process.startup import register_resolvers

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers share the two cores: torch takes one thread in each worker and in every script it
    # starts (inherited). With two threads each, concurrent runs' OpenMP threads spin against each other:
    # experiment=cnn overran its 10 minutes next to the docs test (and with two suites at once, a 9 s
    # notebook fit took 268 s).
    import torch  # here only: xdist's controller process, which runs no test, need not load it

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The configs' ${mnistlab.*} resolvers, as every entry script registers them (mnistlab.process.setup),
# for the tests that compose conf/ themselves.
register_resolvers()

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MNISTLAB_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    """Writes a tiny MNIST-shaped dataset (random pixels, labels cycling 0-9) into ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in files.items():
        data = idx_bytes(np.asarray(array))
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_idx_set(tmp_path / "tiny")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = DATA_DIR / "mnist"
    assert (path / "train-images-idx3-ubyte.gz").exists(), f"real MNIST expected in {path} (set MNISTLAB_DATA_DIR)"
    return path


def run_script(
    script: str, *overrides: str, cwd: Path | None = None, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs ``scripts/<script>`` with Hydra overrides, as a user would, and captures its output."""
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1", **(env or {})}
    return run_python([str(ROOT / "scripts" / script), *overrides], cwd=cwd or ROOT, env=env, timeout=timeout)


def compose_train(overrides: list[str], tmp_path: Path, data_dir: Path | None = None):
    """``conf/train.yaml`` with ``overrides``, outside a Hydra app: paths pinned under ``tmp_path``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # what ${hydra:...} reads (logger=mlflow names its run from it)
    with open_dict(cfg):
        # ${hydra:...} resolvers need a running app; pin the paths they would give.
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(data_dir or tmp_path)
        cfg.paths.mlflow_dir = str(tmp_path / "outputs")
        del cfg["hydra"]
    return cfg


def tiny_linear_args(tmp_path: Path, max_epochs: int) -> tuple[str, ...]:
    """Overrides of a linear network on 60 hand-made images (50 to train on, 5 batches of 10; 10 to validate on)."""
    data = write_idx_set(tmp_path / "tiny")
    return (
        f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10", "model=linear",
        "data.batch_size=10", f"trainer.max_epochs={max_epochs}", "callbacks.progress_bar.refresh_rate=0",
    )  # fmt: skip


def self_signal_module(folder: Path, source: str) -> dict[str, str]:
    """Writes a test's own callback, ``source``, as ``folder/selfsignal.py`` and returns the environment under which
    a run imports it (``+callbacks.self_signal._target_=selfsignal.<its class>``), its resume too."""
    (folder / "selfsignal.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def signal_at_first_checkpoint(args: list[str], last: Path, sig: int, cwd: Path = ROOT) -> tuple[int, str]:
    """Starts ``scripts/train.py`` with ``args``, sends it ``sig`` as soon as ``last`` (its last.ckpt) exists, and
    returns its exit code and stderr. SIGINT reaches it as a terminal's Ctrl-C does (default handling restored)."""
    import signal
    import time

    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR)}
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *args]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=120)[1]
    return proc.returncode, stderr


def kill_at_first_checkpoint(args: list[str], last: Path) -> None:
    """Starts ``scripts/train.py`` with ``args`` and SIGKILLs it as soon as ``last`` (its last.ckpt) exists."""
    import signal

    code, stderr = signal_at_first_checkpoint(args, last, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr[-3000:]


# The suite's longest files, longest first (2026-12-05, 2 xdist workers). They are queued first so that the
# two workers end together; by default xdist queues files by their number of tests, which left the
# one-test real-data runs (test_cnn.py: 3-5 minutes) to the end, one worker idle. Needs --no-loadscope-reorder.
LONGEST_FIRST = (
    "test_docs_commands.py", "test_lightning_contract.py", "test_cnn.py", "test_own_network.py",
    "test_best_hidden.py", "test_fashion_mnist.py", "test_ddp.py", "test_cross_validation.py",
    "test_speedrun.py", "test_export.py", "test_predict.py", "test_errors.py", "test_mistakes.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@dataclass
class TrainedRun:
    """A finished ``scripts/train.py`` run: its folder and console output."""

    dir: Path
    stdout: str

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoints" / "last.ckpt"

    @property
    def metrics(self) -> dict:
        return json.loads((self.dir / "metrics.json").read_text())


def train(run_dir: Path, *overrides: str, timeout: int = 600) -> TrainedRun:
    """Runs ``scripts/train.py`` into ``run_dir`` without a progress bar and checks that it succeeded."""
    result = run_script(
        "train.py", *overrides, f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0", timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedRun(run_dir, result.stdout)


@pytest.fixture(scope="session")
def notebook_hidden_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``experiment=notebook_hidden`` trained once per test session (~20 s), shared by every test that needs a model."""
    return train(tmp_path_factory.mktemp("notebook_hidden") / "run", "experiment=notebook_hidden")
