"""A newcomer's mistakes with every script: one line, exit 2, no traceback, no folder left behind.

The table "Other scripts, launchers and Trainer settings" of docs/errors.md is the specification.
Each row runs in an empty working directory, so any folder a failed command leaves shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import DATA_DIR, ROOT, run_script, write_idx_set

from mnistlab.data import MNISTDataModule
from mnistlab.models import MLP
from mnistlab.systems import Classifier

TABLE = ROOT / "docs" / "errors.md"
TINY = ("data.download=false", "data.verify=false", "data.val_size=10", "callbacks.progress_bar.refresh_rate=0")
NEEDS_NO_GPU = {"accelerator-gpu", "accelerator-gpu-predict", "accelerator-gpu-serve", "devices-without-gpu"}
NEEDS_NO_GPU |= {"accelerator-cuda"}


def rows() -> dict[str, tuple[str, str, int, str]]:
    """ID -> (script, overrides, exit code, message) of the six-column table of docs/errors.md."""
    found = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[4].isdigit():
            found[cells[0]] = (cells[2], cells[3].strip("`"), int(cells[4]), cells[5].strip("`"))
    return found


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch run on tiny synthetic data, in a run folder of its own."""
    base = tmp_path_factory.mktemp("tiny_run")
    data = write_idx_set(base / "tiny")
    result = run_script(
        "train.py", f"data.root={data}", *TINY, "trainer.max_epochs=1", "logger=[tensorboard,csv]",
        f"hydra.run.dir={base}/run", cwd=base,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (base / "console.txt").write_text(result.stdout + result.stderr)
    return base / "run"


def filled(text: str, fill: dict[str, str]) -> str:
    """``text`` with its ``{root}`` and ``{run}`` filled in; other braces (a Hydra dict override) stay."""
    for name, value in fill.items():
        text = text.replace(f"{{{name}}}", value)
    return text


@pytest.fixture(scope="module")
def python_checkpoint(tiny_run: Path) -> Path:
    """A checkpoint of ``Classifier(MLP(hidden_units=8))`` fitted by a plain Trainer in Python, without net_config."""
    path = tiny_run.parent / "python.ckpt"
    dm = MNISTDataModule(str(tiny_run.parent / "tiny"), download=False, verify=False, val_size=0, batch_size=20)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tiny_run.parent)  # fmt: skip
    trainer.fit(Classifier(MLP(hidden_units=8)), datamodule=dm)
    trainer.save_checkpoint(path)
    return path


def run_row(
    row: str, base: Path, tiny_run: Path, python_ckpt: Path
) -> tuple[subprocess.CompletedProcess, dict[str, str], Path]:
    script, overrides, _, _ = rows()[row]
    root, cwd = base / "input", base / "cwd"
    root.mkdir()
    cwd.mkdir()
    if row == "torchscript-to-predict":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(torch.nn.Linear(784, 10), torch.rand(1, 784)).save(str(root / "model.pt"))
    if row == "onnx-to-evaluate":  # the start of an ONNX file (protobuf: ir_version 8)
        (root / "model.onnx").write_bytes(b"\x08\x08\x12\x07pytorch")
    if row == "not-a-checkpoint":
        torch.save(torch.zeros(3), root / "weights.pt")
    if row == "folder-of-runs":  # outputs/<date>/ of two runs, no sweep
        for name in ("a", "b"):
            shutil.copytree(tiny_run, root / name)
    if row == "sweep-unfinished":  # job 0 of a sweep, stopped: its checkpoints, no job.json nor metrics.json
        job = shutil.copytree(tiny_run, root / "0_seed=1")
        (job / "metrics.json").unlink()
        (root / "multirun.yaml").write_text("{}")
    if row == "ckpt-python-arguments":
        shutil.copy(python_ckpt, root / "python.ckpt")
    if row == "export-folder":
        (root / "notes.txt").write_text("a file where a folder would go")
    if row == "sweep-params-changed":  # what the first launch of seed=1,2 recorded that the check reads
        sweeper = "_target_: hydra_plugins.mnistlab_sweeps.grid_sweeper.GridSweeper\n    params:\n      seed: 1,2\n"
        (root / "multirun.yaml").write_text(f"hydra:\n  overrides:\n    task: []\n  sweeper:\n    {sweeper}")
    fill = {"root": str(root), "run": str(tiny_run)}
    args = [filled(a, fill) for a in overrides.split()]
    if row == "finished-checkpoint":  # tiny data: where the checkpoint's run found it
        args += [f"data.root={tiny_run.parent / 'tiny'}", *TINY]
    return run_script(script, *args, cwd=cwd), fill, cwd


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, python_checkpoint: Path) -> dict:
    """Every row at once: each is mostly interpreter and import start-up."""
    names = sorted(rows())
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = pool.map(lambda r: run_row(r, tmp_path_factory.mktemp(r), tiny_run, python_checkpoint), names)
        return dict(zip(names, runs, strict=True))


def test_table_has_the_rows_of_the_issue() -> None:
    required = {"no-ckpt-evaluate", "no-ckpt-predict", "no-ckpt-export", "accelerator-gpu", "slurm-without-slurm"}
    required |= {"devices-without-gpu", "finished-checkpoint", "torchscript-to-predict"}
    assert required <= set(rows())


@pytest.mark.parametrize("row", sorted(rows()))
def test_mistake(row: str, results: dict) -> None:
    if row in NEEDS_NO_GPU and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if row == "slurm-without-slurm" and shutil.which("sbatch"):
        pytest.skip("this machine has SLURM")
    _, _, code, message = rows()[row]
    result, fill, cwd = results[row]
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    # "…" stands for varying text; "<br>" separates the lines of one message, printed one after another.
    expected = filled(message, fill).split("<br>")
    for line, want in zip(lines[errors[0] :], expected, strict=False):
        assert re.fullmatch(".*?".join(re.escape(part) for part in want.split("…")), line), output[-3000:]
    assert len(lines) - errors[0] >= len(expected), output[-3000:]
    assert "Traceback" not in output
    assert list(cwd.iterdir()) == []  # no outputs/, multirun/ or data/ left behind


def test_continuing_counts_the_checkpoints_epochs(tiny_run: Path, tmp_path: Path) -> None:
    """``ckpt_path=RUN_DIR`` continues its last.ckpt; max_epochs is the total, as in Lightning."""
    data = tiny_run.parent / "tiny"
    result = run_script(
        "train.py", f"ckpt_path={tiny_run}", "trainer.max_epochs=2", f"data.root={data}", *TINY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ckpt_path={tiny_run} is a folder: using {tiny_run}/checkpoints/last.ckpt" in result.stderr
    [new_run] = (tmp_path / "outputs").glob("*/*")
    assert (new_run / "metrics.json").is_file() and '"epochs": 2' in (new_run / "metrics.json").read_text()


NOISE = ("💡", "litlogger", "litmodels", "LeafSpec", "Total length of", "will be deleted")


def test_the_console_is_quiet(tiny_run: Path, tmp_path: Path) -> None:
    """No Lightning tips, no deprecation notes or warnings about intended settings, each log line once."""
    trained = (tiny_run.parent / "console.txt").read_text()  # with the CSV logger too
    no_validation = run_script(
        "train.py", f"data.root={tiny_run.parent / 'tiny'}", *TINY, "data.val_size=0", "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}/run", cwd=tmp_path,
    )  # fmt: skip
    assert no_validation.returncode == 0, no_validation.stderr[-3000:]
    for output in (trained, no_validation.stdout + no_validation.stderr):
        assert not [noise for noise in NOISE if noise in output], output
        assert output.count("GPU available") == 1
    assert (tiny_run / "csv" / "metrics.csv").is_file()
    log = (tiny_run / "train.log").read_text()
    assert "GPU available" in log  # Lightning's info lines go to the log ...
    data = f"data.root={tiny_run.parent / 'tiny'}"
    result = run_script("evaluate.py", f"ckpt_path={tiny_run}", data, *TINY[:2], cwd=tiny_run)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert not [noise for noise in NOISE if noise in output], output
    assert output.count("GPU available") == 1  # ... and to the console once
    assert f"ckpt_path={tiny_run} is a folder: using {tiny_run}/checkpoints/best.ckpt" in result.stderr
    [report] = (tiny_run / "eval").iterdir()  # evaluate writes into the checkpoint's own run folder
    assert (report / "metrics.json").is_file() and not (tiny_run / "outputs").exists()


def test_only_user_errors_lose_their_traceback() -> None:
    import hydra
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from mnistlab.errors import ConfigError
    from mnistlab.user_errors import user_error

    def raised(make) -> BaseException:
        try:
            make()
        except Exception as exc:
            return exc
        raise AssertionError("nothing raised")

    def unpack() -> None:  # a user's callback with a bug: x, y = batch on a list of three
        _images, _labels = [1, 2, 3]

    assert user_error(raised(unpack)) is None  # a bug: its traceback is kept
    assert user_error(raised(lambda: int("x"))) is None
    assert user_error(ConfigError("optimizer.lr=0 is out of range")) == "optimizer.lr=0 is out of range"
    assert user_error(MisconfigurationException("You set a thing twice")) == "You set a thing twice"
    cfg = OmegaConf.create({"model": {"_target_": "mnistlab.models.MLP", "init": "tanh"}})
    wrapped = raised(lambda: hydra.utils.instantiate(cfg.model))
    assert user_error(wrapped) == "model.init='tanh' must be 'torch' or 'keras'"  # MLP refused the value
    own = raised(
        lambda: hydra.utils.instantiate(
            OmegaConf.create({"_target_": "mnistlab.data.MNISTDataModule", "batch_size": 0})
        )
    )
    assert user_error(own) == "data.batch_size=0 is out of range: must be an integer >= 1"  # no "full_key" prefix
    missing = raised(lambda: OmegaConf.create({"ckpt_path": "???"}).ckpt_path)
    assert user_error(missing).startswith("ckpt_path is required: add ckpt_path=... to the command")


def test_output_folders_of_the_scripts(tmp_path: Path) -> None:
    """Training in outputs/, benchmarks apart from it, evaluate in the checkpoint's run, export and predict: none."""
    from hydra import compose, initialize_config_dir

    from mnistlab.process.startup import register_resolvers
    from mnistlab.run_folders import checkpoint_run_dir

    register_resolvers()  # what the scripts do before Hydra composes
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        run_dir = {name: compose(name, return_hydra_config=True).hydra.run.dir for name in ("train", "benchmark")}
        for name in ("export", "predict"):
            hydra_cfg = compose(name, return_hydra_config=True).hydra
            assert (hydra_cfg.run.dir, hydra_cfg.output_subdir) == (".", None)
    assert run_dir["train"].startswith("outputs/") and run_dir["benchmark"].startswith("benchmark-runs/")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert checkpoint_run_dir(str(run / "checkpoints" / "last.ckpt")) == run == checkpoint_run_dir(str(run))
    assert checkpoint_run_dir(str(tmp_path / "missing" / "last.ckpt")) is None  # then outputs/, removed on failure


def test_a_scheduled_checkpoint_is_continued_by_resume_alone(tiny_run: Path, tmp_path: Path) -> None:
    """Lightning restores the schedule's state, its length included (past it, OneCycleLR raised mid-run), and
    the optimizer's learning rate where the schedule left it: without a schedule the run trained on at
    that rate, while its record said optimizer.lr=0.001."""
    data = tiny_run.parent / "tiny"
    first = tmp_path / "scheduled"
    made = run_script("train.py", "scheduler=one_cycle", f"data.root={data}", *TINY, "trainer.max_epochs=1",
                      f"hydra.run.dir={first}", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    args = (f"ckpt_path={first}", f"data.root={data}", *TINY, "trainer.max_epochs=2")
    for schedule in (("scheduler=one_cycle",), ()):
        refused = run_script("train.py", *args, *schedule, cwd=tmp_path)
        last = refused.stderr.strip().splitlines()[-1]
        assert refused.returncode == 2 and last.startswith(
            f"error: ckpt_path={first}/checkpoints/last.ckpt was trained under a learning-rate schedule: its "
            "optimizer restores the schedule's last learning rate ("
        ), refused.stderr[-3000:]
        assert last.endswith("and the schedule is sized for its own run; continue that run with resume=RUN_DIR")
    assert not list(tmp_path.glob("outputs/*/*"))  # no run folder left behind


def test_data_that_fails_its_check_in_setup_leaves_no_folder(tiny_run: Path, tmp_path: Path) -> None:
    # Before: the loggers wrote (CSV's hparams.yaml, TensorBoard's event file) before the data module's setup
    # found the wrong files, and <run>/eval/<time>/ or outputs/<date>/<time>/ stayed behind.
    other = DATA_DIR / "fashion-mnist"  # found, but Fashion-MNIST's files, not MNIST's
    reports = set((tiny_run / "eval").glob("*"))  # other tests' evaluations of the same run
    evaluated = run_script(
        "evaluate.py", f"ckpt_path={tiny_run}", f"data.root={other}", "data.verify=true", cwd=tmp_path
    )
    trained = run_script(
        "train.py", f"data.root={other}", "trainer.max_epochs=1", "logger=[tensorboard,csv]", cwd=tmp_path
    )
    for result in (evaluated, trained):
        last = result.stderr.splitlines()[-1]
        assert result.returncode == 2 and "is fashion_mnist's " in last and "-idx3-ubyte, not mnist's" in last, last
    assert set((tiny_run / "eval").glob("*")) == reports and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mps", "cuda"])
def test_an_accelerator_this_machine_lacks_names_the_setting(name: str) -> None:
    """Before: Lightning's "`MPSAccelerator` can not run on your system ..." without the setting it came from."""
    import hydra
    from omegaconf import OmegaConf

    from mnistlab.user_errors import user_error

    if {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}[name]:
        pytest.skip(f"this machine has {name}")
    config = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "accelerator": name, "logger": False})
    for key, make in (("trainer.accelerator", lambda: hydra.utils.instantiate(config)),
                      ("accelerator", lambda: pl.Trainer(accelerator=name, logger=False))):  # fmt: skip
        with pytest.raises(Exception) as raised:
            make()
        message = user_error(raised.value)
        assert message is not None and message.startswith(f"{key}={name}, but this machine has no usable "), message
        assert f"; use {key}=cpu" in message, message  # what this machine has
