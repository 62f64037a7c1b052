"""Where data is looked for, what a failed lookup says, and that it creates nothing; checkpoints that travel."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TrainedRun, write_idx_set

from mnistlab.data import MNISTDataModule
from mnistlab.data.files import download, missing_resources
from mnistlab.data.specs import MNIST, SPECS
from mnistlab.errors import DataError
from mnistlab.evaluation.evaluate import data_root, official_test_set

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NAMES = ", ".join(f"{name}[.gz]" for name in FILES)


def missing_message(root: Path) -> str:
    with pytest.raises(DataError) as err:
        MNISTDataModule(root=str(root), download=False).prepare_data()
    return str(err.value)


def test_messages_suggest_only_what_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNISTLAB_DATA_DIR", raising=False)
    explicit = tmp_path / "elsewhere" / "mnist"  # data.root=...: the variable would not change it
    assert missing_message(explicit).splitlines() == [
        f"mnist data not found in {explicit} (data.download=false)",
        f"  missing: {NAMES}",
        "  fix: point data.root at a folder holding them, or allow the download with data.download=true",
    ]
    default = tmp_path / "data" / "mnist"
    assert missing_message(default).splitlines()[-1] == (
        f"  fix: put the files into {default}, or set MNISTLAB_DATA_DIR to a folder with a mnist/ subfolder, "
        "or data.root=PATH, or allow the download with data.download=true"
    )
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "shared"))
    from_env = tmp_path / "shared" / "mnist"
    assert missing_message(from_env).splitlines()[-1] == (
        f"  fix: put the files into {from_env}, or set MNISTLAB_DATA_DIR to a folder with a mnist/ subfolder "
        "holding them, or allow the download with data.download=true"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created by a lookup


def test_a_folder_one_level_off_is_named_and_not_downloaded_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: data.root at the folder above mnist/ (or MNISTLAB_DATA_DIR at mnist/ itself) started a download of
    # a second copy there; offline, the message said only "point data.root at a folder holding them".
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNISTLAB_DATA_DIR", raising=False)
    monkeypatch.setitem(SPECS, "mnist", dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:9/",)))
    shared = tmp_path / "shared"
    (shared / "mnist").mkdir(parents=True)
    for name in FILES:
        (shared / "mnist" / f"{name}.gz").write_bytes(b"")
    with pytest.raises(DataError) as err:
        MNISTDataModule(root=str(shared), download=True).prepare_data()
    lines = str(err.value).splitlines()
    assert lines[0] == f"mnist data not found in {shared} (files missing, not downloaded)"
    assert lines[-1] == f"  fix: they are in {shared / 'mnist'}: give data.root={shared / 'mnist'}"
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(shared / "mnist"))
    too_deep = shared / "mnist" / "mnist"
    assert (
        missing_message(too_deep).splitlines()[-1]
        == f"  fix: they are in {shared / 'mnist'}: set MNISTLAB_DATA_DIR={shared}"
    )
    assert sorted(p.name for p in shared.iterdir()) == ["mnist"]  # nothing downloaded beside it
    assert len(list((shared / "mnist").iterdir())) == len(FILES)


def test_a_failed_download_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    unreachable = dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:9/",))  # nothing listens on port 9
    root = tmp_path / "new" / "deeper" / "mnist"
    with pytest.raises(DataError) as err:
        download(root, unreachable, missing_resources(root, unreachable))
    lines = str(err.value).splitlines()
    assert lines[0] == f"mnist data not found in {root} (download failed)"
    assert lines[1].startswith("  http://127.0.0.1:9/: ") and "refused" in lines[1].lower()
    assert "data.download=true" not in str(err.value)  # it was on
    assert list(tmp_path.iterdir()) == []  # no new/deeper/mnist left behind


def test_a_download_that_cannot_write_its_file_says_why(tmp_path: Path) -> None:
    # A folder where the file goes stands for one that cannot be written (a read-only mount): before, removing the
    # failed download's leftover raised IsADirectoryError (EROFS there) over the reason, a traceback.
    unreachable = dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:9/",))
    root = tmp_path / "mnist"
    (root / "t10k-labels-idx1-ubyte.gz").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        download(root, unreachable, [unreachable.resources[-1]])
    assert str(err.value).splitlines()[0] == f"mnist data not found in {root} (download failed)"


def test_evaluate_downloads_and_names_only_the_test_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: evaluate.py and predict.py fetched all four files, and a failed download named the training files.
    monkeypatch.setitem(SPECS, "mnist", dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:9/",)))
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        data_root({"dataset": "mnist", "root": None}, download=True)
    assert "train-" not in str(err.value) and "t10k-images-idx3-ubyte" in str(err.value)


def test_predict_and_export_read_a_data_root_of_the_test_files_alone(tmp_path: Path) -> None:
    # Before: predict.py and export.py with data.root=<a folder of the t10k files> said "missing:
    # train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]" (or downloaded them), where evaluate.py ran.
    root = write_idx_set(tmp_path / "tiny")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (root / name).unlink()
    saved = {"root": "/where/it/trained", "dataset": "mnist", "verify": False, "val_size": 0}
    images, labels = official_test_set(saved, {"root": str(root), "download": False})
    assert images.shape == (20, 1, 28, 28) and labels.tolist() == [i % 10 for i in range(20)]
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_a_checkpoint_reads_data_where_this_machine_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {"dataset": "mnist", "root": str(tmp_path / "cluster" / "mnist")}
    (tmp_path / "here" / "mnist").mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / "here" / "mnist" / f"{name}.gz").write_bytes(b"")
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "here"))
    assert data_root(saved, download=False) == tmp_path / "here" / "mnist"
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        data_root(saved, download=False)
    assert str(err.value).splitlines()[:2] == [
        f"mnist data not found in {tmp_path / 'nowhere' / 'mnist'} (data.download=false)",
        f"  also searched: {tmp_path / 'cluster' / 'mnist'}",  # the checkpoint's saved folder, last
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def test_a_moved_checkpoint_evaluates_with_moved_data(
    notebook_hidden_run: TrainedRun, mnist_dir: Path, tmp_path: Path
) -> None:
    """The checkpoint trained "on a cluster" (its saved data folder is gone) and the test files copied to a new place.

    A test needs no training files: before, the missing train-images and train-labels stopped it.
    """
    ckpt = torch.load(notebook_hidden_run.checkpoint, weights_only=True)
    ckpt["datamodule_hyper_parameters"]["root"] = "/cluster/scratch/mnist"
    run = tmp_path / "laptop" / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    data = tmp_path / "laptop" / "datasets"
    shutil.copytree(mnist_dir, data / "mnist", ignore=lambda d, names: [n for n in names if not n.startswith("t10k-")])
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"ckpt_path={run}/checkpoints/last.ckpt"]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [report] = (run / "eval").iterdir()  # into the checkpoint's own run folder
    assert json.loads((report / "metrics.json").read_text())["test/acc"] == notebook_hidden_run.metrics["test/acc"]
    assert not Path("/cluster").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["laptop"]


def test_a_checkpoint_of_unverified_files_is_tested_on_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: a run trained on its own IDX files (data.root=... data.verify=false) was evaluated, predicted and
    # checked on export against the published MNIST test set of $MNISTLAB_DATA_DIR, without a word.
    for folder in ("own", "shared/mnist"):
        (tmp_path / folder).mkdir(parents=True)
        for name in FILES:
            (tmp_path / folder / f"{name}.gz").write_bytes(b"")
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "shared"))
    saved = {"dataset": "mnist", "root": str(tmp_path / "own"), "verify": False}
    assert data_root(saved, download=False) == tmp_path / "own"
    assert capsys.readouterr().err == (
        f"data: reading the checkpoint's own files in {tmp_path / 'own'} (it trained with data.verify=false)\n"
    )
    assert data_root({**saved, "verify": True}, download=False) == tmp_path / "shared" / "mnist"  # published files
    shutil.rmtree(tmp_path / "own")  # a moved checkpoint: other files, and the line says so
    assert data_root(saved, download=False) == tmp_path / "shared" / "mnist"
    assert capsys.readouterr().err == (
        f"data: the checkpoint trained on unverified files in {tmp_path / 'own'} (data.verify=false), which are not "
        f"there; testing on the files in {tmp_path / 'shared' / 'mnist'} instead (data.root=... names the folder "
        "to test on)\n"
    )
