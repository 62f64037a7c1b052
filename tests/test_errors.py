"""Every row of docs/errors.md: the bad input, run through scripts/train.py, prints the documented line."""

from __future__ import annotations

import fcntl
import gzip
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, ROOT, idx_bytes, run_script, write_idx_set

from mnistlab.checkpoints import read_checkpoint
from mnistlab.errors import MnistlabError

TABLE = ROOT / "docs" / "errors.md"
QUICK = ("callbacks.progress_bar.refresh_rate=0", "trainer.max_epochs=1", "trainer.limit_train_batches=100")


def documented() -> dict[str, tuple[str, int, str]]:
    """ID -> (overrides, exit code, message) of every row of the table in docs/errors.md."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[3].isdigit():
            overrides = cells[2].split("`")[1] if "`" in cells[2] else ""
            rows[cells[0]] = (overrides, int(cells[3]), cells[4].strip("`"))
    return rows


def rewrite(root: Path, name: str, data: bytes) -> None:
    (root / f"{name}.gz").write_bytes(gzip.compress(data))


def tiny(root: Path) -> None:
    write_idx_set(root)


def truncated(root: Path) -> None:
    write_idx_set(root)
    rewrite(root, "train-images-idx3-ubyte", idx_bytes(np.zeros((60, 28, 28), np.uint8))[:47000])


def wrong_magic(root: Path) -> None:
    write_idx_set(root)
    rewrite(root, "train-labels-idx1-ubyte", bytes([0, 0, 9, 1]) + (60).to_bytes(4, "big") + bytes(60))


def count_mismatch(root: Path) -> None:
    write_idx_set(root)
    rewrite(root, "train-labels-idx1-ubyte", idx_bytes(np.arange(59) % 10))


def image_size(root: Path) -> None:
    write_idx_set(root)
    rewrite(root, "train-images-idx3-ubyte", idx_bytes(np.zeros((60, 20, 20), np.uint8)))


def bad_gzip(root: Path) -> None:
    write_idx_set(root)
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data")


class Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def mnist_files(root: Path) -> None:
    """The real MNIST files, as a folder of Fashion-MNIST's would hold them."""
    root.symlink_to(DATA_DIR / "mnist", target_is_directory=True)


def evil_checkpoint(root: Path) -> None:
    root.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": Payload(root / "pwned")}, root / "evil.ckpt")


def run_without_checkpoint(root: Path) -> None:
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "config.yaml").write_text("seed: 1\n")


def run_without_checkpointing(root: Path) -> None:
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "config.yaml").write_text("seed: 1\ntrainer:\n  enable_checkpointing: false\n")


def interrupted_run(root: Path) -> None:
    """What a Ctrl-C'd run leaves: its last checkpoint, no metrics.json."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.ckpt").write_bytes(b"")


TINY = ("data.download=false", "data.verify=false", "data.val_size=10")
SETUPS: dict[str, tuple[Callable[[Path], None] | None, tuple[str, ...]]] = {
    "missing-data": (None, ()),
    "checksum": (tiny, ("data.val_size=10",)),
    "other-dataset-files": (mnist_files, ()),
    "truncated-idx": (truncated, TINY),
    "wrong-magic": (wrong_magic, TINY),
    "count-mismatch": (count_mismatch, TINY),
    "image-size": (image_size, TINY),
    "bad-gzip": (bad_gzip, TINY),
    "nan-loss": (tiny, (*TINY, "data.root={root}")),
    "pickle-checkpoint": (evil_checkpoint, ()),
    "resume-no-checkpoint": (run_without_checkpoint, ()),
    "resume-no-checkpointing": (run_without_checkpointing, ()),
    "teacher-unfinished": (interrupted_run, ()),
}


def test_table_has_the_required_rows() -> None:
    required = {"lr-zero", "batch-size", "val-size", "max-epochs", "misspelled-key", "unknown-model"}
    required |= {"unknown-optimizer", "truncated-idx", "wrong-magic", "count-mismatch", "image-size", "bad-gzip"}
    required |= {"nan-loss", "pickle-checkpoint"}
    assert required <= set(documented())


def run_row(row: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    overrides, _, _ = documented()[row]
    root = tmp_path / "input"
    setup, extra = SETUPS.get(row, (None, ()))
    if setup is not None:
        setup(root)
    fill = {"root": str(root), "root_name": root.name}
    args = [a.format(**fill) for a in (*overrides.split(), *extra)]
    if not any(a.startswith("resume=") for a in args):
        args = [f"hydra.run.dir={tmp_path / 'run'}", *QUICK, *args]  # the row's own settings last, so they win
    return run_script("train.py", *args), fill


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs every row at once: each is mostly interpreter and import start-up, one core each."""
    rows = sorted(documented())
    folders = [tmp_path_factory.mktemp(r) for r in rows]  # here: pytest's mktemp is not thread-safe
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = pool.map(run_row, rows, folders)
        return dict(zip(rows, runs, strict=True))


@pytest.mark.parametrize("row", sorted(documented()))
def test_bad_input(row: str, results: dict) -> None:
    _, code, message = documented()[row]
    result, fill = results[row]
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    # "…" in the table stands for varying text; "<br>" separates the lines of one message.
    for line in message.format(**fill).split("<br>"):
        pattern = ".*?".join(re.escape(part) for part in line.split("…"))
        assert re.search(pattern, output), f"{line!r} not in:\n{output[-3000:]}"
    assert "Traceback" not in output
    assert not (Path(fill["root"]) / "pwned").exists()  # a pickled payload never ran


@pytest.mark.parametrize("row", ["batch-size", "val-size", "lr-zero"])
def test_a_setting_refused_while_the_run_is_built_is_not_preceded_by_the_engine_line(row: str, results: dict) -> None:
    """The data module and the system refuse these; the engine's line ("every setting ... is exact") came first."""
    result, _ = results[row]
    assert "engine: " not in result.stdout + result.stderr, result.stderr[-3000:]


def test_read_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    evil_checkpoint(tmp_path / "c")
    with pytest.raises(MnistlabError, match=r"refused, it holds a pickled posix\.mkdir"):
        read_checkpoint(tmp_path / "c" / "evil.ckpt")
    assert not (tmp_path / "c" / "pwned").exists()
    (tmp_path / "train.log").write_text("[2026-12-04 21:44:05,713][mnistlab.engine][INFO] - engine: chunked\n")
    with pytest.raises(MnistlabError, match=r"train\.log: not a readable checkpoint \(no file of torch\.save\)"):
        read_checkpoint(tmp_path / "train.log")


@pytest.mark.parametrize("engine", ["chunked", "per_step"])
@pytest.mark.parametrize(
    ("every_n_steps", "message"),
    [
        # last.ckpt due at logging step 5: the loss check runs before Lightning's checkpoint callbacks.
        (5, "error: train/loss_step is nan at step 5 (epoch 0)"),
        # last.ckpt due at step 2, between logging steps: the save checks the weights themselves.
        (2, "error: the weights are not finite at step 2 (epoch 0), so they are not saved: training diverged"),
    ],
)
def test_divergence_at_a_checkpoint_step_is_not_saved(
    tmp_path: Path, engine: str, every_n_steps: int, message: str
) -> None:
    # 50 training images in batches of 2; the loss is NaN from step 2, first read at logging step 5.
    run = tmp_path / "run"
    proc = run_script(
        "train.py",
        f"hydra.run.dir={run}",
        f"data.root={write_idx_set(tmp_path / 'tiny')}",
        *TINY,
        f"engine={engine}",
        "data.batch_size=2",
        "optimizer=sgd",
        "optimizer.lr=1e30",
        "trainer.log_every_n_steps=5",
        f"callbacks.last_checkpoint.every_n_steps={every_n_steps}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not list(run.glob("checkpoints/*.ckpt"))  # no checkpoint of diverged weights to resume from


def test_an_error_inside_the_fit_prints_on_a_line_of_its_own_after_the_progress_bar(tmp_path: Path) -> None:
    """In a terminal the bar (stdout) and the error (stderr) share a line: run it on a pseudo-terminal."""
    overrides = [f"hydra.run.dir={tmp_path / 'run'}", f"data.root={write_idx_set(tmp_path / 'tiny')}", *TINY,
                 "data.batch_size=2", "optimizer=sgd", "optimizer.lr=1e30", "trainer.log_every_n_steps=5",
                 "callbacks.progress_bar.refresh_rate=1"]  # fmt: skip
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # with 0 columns tqdm draws no bar
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *overrides], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)  # fmt: skip
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert proc.wait(timeout=300) == 2, screen[-2000:]
    assert b"Epoch 0" in screen, screen[-2000:]  # the bar was drawn
    line = next(line for line in screen.decode(errors="replace").split("\n") if "error:" in line)  # ends in \r
    # What the terminal shows of that line: the text after its last carriage return. Before: the bar, then the error.
    assert line.rstrip("\r").split("\r")[-1].startswith("error: train/loss_step is nan at step 5"), repr(line[-300:])


def test_a_mapping_as_ckpt_path_is_refused_as_no_path() -> None:
    from mnistlab.checkpoint_paths import find_checkpoints

    # Before: "checkpoint not found: a" (the mapping was read as the list of its keys).
    with pytest.raises(MnistlabError, match=r"ckpt_path=\{'a': 1\} is not a path: give a \.ckpt file"):
        find_checkpoints({"a": 1})


@pytest.mark.parametrize("given", [None, 5, {"a": 1}, [None]])
def test_predict_refuses_what_is_no_path_in_one_line(given: object) -> None:
    from mnistlab.evaluation.predictors import load_predictor

    # Before: predict.py ckpt_path=null index=1 ended in "TypeError: object of type 'NoneType' has no len()",
    # a traceback and exit 1 (evaluate.py, export.py and serve.py said "ckpt_path=None is not a path: ...").
    with pytest.raises(MnistlabError, match=r"^ckpt_path=(None|5|\{'a': 1\}) is not a path: give a \.ckpt file"):
        load_predictor(given, "cpu")
