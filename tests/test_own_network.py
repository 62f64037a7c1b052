"""Bring your own network: a CNN defined outside the package trains, evaluates, predicts, exports and sweeps."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TrainedRun, run_script, train
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.checkpoints import load_system
from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST
from mnistlab.errors import MnistlabError
from mnistlab.systems import Classifier

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

MYNETS = '''
"""A user's networks, outside mnistlab."""

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 12, 12)
            nn.Conv2d(width, 2 * width, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 4, 4)
            nn.Flatten(), nn.Linear(2 * width * 16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
'''

TINY_CNN_YAML = """\
_target_: mynets.TinyCNN
width: 8
num_classes: 10
"""


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``mynets.py`` in a code folder and ``model/tiny_cnn.yaml`` in a config folder, both outside the repository."""
    root = tmp_path_factory.mktemp("user")
    (root / "code").mkdir()
    (root / "code" / "mynets.py").write_text(MYNETS)
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "model" / "tiny_cnn.yaml").write_text(TINY_CNN_YAML)
    return root / "code", root / "conf"


@pytest.fixture
def on_pythonpath(user_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's code folder on PYTHONPATH (for the scripts) and on sys.path (for this process)."""
    code = user_files[0]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(code))
    return code


@pytest.fixture(scope="module")
def user_run(user_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """``model=tiny_cnn`` on real MNIST (a short epoch), selected through the user's search path."""
    code, conf = user_files
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]))
        return train(
            tmp_path_factory.mktemp("tiny_cnn") / "run",
            f"hydra.searchpath=[file://{conf}]",
            "model=tiny_cnn",
            "data.batch_size=128",
            "trainer.max_epochs=1",  # one whole epoch: 430 batches of 128
        )


def test_user_network_trains_and_records_how_to_rebuild_it(user_run: TrainedRun) -> None:
    assert user_run.metrics["test/acc"] > 0.9 and user_run.metrics["epochs"] == 1
    ckpt = torch.load(user_run.dir / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["net"] == {"_target_": "mynets.TinyCNN", "width": 8, "num_classes": 10}
    assert hparams["head"] == "softmax"
    events = EventAccumulator(str(user_run.dir), size_guidance={"images": 0})
    events.Reload()
    assert {"train/samples", "val/confusion_matrix", "test/confusion_matrix"} <= set(events.Tags()["images"])


def test_evaluate_predict_and_export_rebuild_the_user_network(
    user_run: TrainedRun, on_pythonpath: Path, tmp_path: Path
) -> None:
    best = user_run.dir / "checkpoints" / "best.ckpt"  # the one the run tested
    evaluated = run_script("evaluate.py", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == user_run.metrics["test/acc"]

    def predict_998(ckpt: Path) -> dict:
        result = run_script("predict.py", f"ckpt_path={ckpt}", "index=998", "format=json")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)[0]

    exported = run_script("export.py", f"ckpt_path={best}", "format=onnx", f"output_dir={tmp_path / 'export'}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "checked on 100 test images" in exported.stdout
    from_ckpt, from_onnx = predict_998(best), predict_998(tmp_path / "export" / "model.onnx")
    assert from_ckpt["label"] == 8 and from_ckpt["prediction"] == from_onnx["prediction"]
    assert np.allclose(from_ckpt["probabilities"], from_onnx["probabilities"], atol=1e-5)
    scripted = run_script("export.py", f"ckpt_path={best}", "format=torchscript", f"output_dir={tmp_path / 'ts'}")
    assert scripted.returncode == 0, scripted.stderr[-3000:]


def test_predict_files_with_the_user_network(
    user_run: TrainedRun, on_pythonpath: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    images, labels = load_split(mnist_dir, MNIST, train=False)
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in (0, 1):
        Image.fromarray(255 - images[i].numpy()).save(folder / f"{i}.png")  # dark ink on white paper, like a scan
    result = run_script("predict.py", f"ckpt_path={user_run.checkpoint}", f"image={folder}", "format=json")
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads(result.stdout)
    assert [Path(r["file"]).name for r in records] == ["0.png", "1.png"]
    single = run_script("predict.py", f"ckpt_path={user_run.checkpoint}", f"image={folder / '1.png'}")
    assert single.returncode == 0 and single.stdout.splitlines()[-1].startswith("prediction ")
    assert [r["prediction"] for r in records] == [int(labels[0]), int(labels[1])]


def test_user_network_in_a_sweep(user_files: tuple[Path, Path], on_pythonpath: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_script(
        "train.py", "-m", f"hydra.searchpath=[file://{user_files[1]}]", "model=tiny_cnn,linear",
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "callbacks.progress_bar.refresh_rate=0",
        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "# Sweep summary: 2 jobs, 2 finished, 0 failed" in result.stdout


def test_unimportable_network_module_is_one_line(user_run: TrainedRun, tmp_path: Path) -> None:
    # No PYTHONPATH: mynets cannot be imported.
    result = run_script("evaluate.py", f"ckpt_path={user_run.checkpoint}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO: ")]
    assert "cannot import module mynets" in line and "PYTHONPATH" in line


@pytest.fixture(scope="module")
def builtin_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedRun]:
    """Short real runs of the package's networks (one batch each)."""
    root = tmp_path_factory.mktemp("builtin")
    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=1", "data.val_size=0")
    return {m: train(root / m, f"model={m}", *short) for m in ("linear", "hidden", "cnn")}


@pytest.mark.parametrize("model", ["linear", "hidden", "cnn", "tiny_cnn"])
def test_load_from_checkpoint(
    model: str, builtin_runs: dict[str, TrainedRun], user_run: TrainedRun, on_pythonpath: Path
) -> None:
    ckpt = (user_run if model == "tiny_cnn" else builtin_runs[model]).checkpoint
    system = Classifier.load_from_checkpoint(ckpt).eval()
    expected, _ = load_system(ckpt)
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert type(system.net).__name__ == {"linear": "MLP", "hidden": "MLP", "cnn": "CNN", "tiny_cnn": "TinyCNN"}[model]
    assert system.hparams.net == saved["net"] and system.hparams.optimizer == saved["optimizer"]
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(system(x), expected(x))
    optimizer = system.configure_optimizers()  # the recorded optimizer, rebuilt
    assert isinstance(optimizer, torch.optim.Optimizer)


def test_a_network_record_without_target_is_refused_in_one_line(
    builtin_runs: dict[str, TrainedRun], tmp_path: Path
) -> None:
    """A record without _target_ (the early MLP form, which no shipped checkpoint has) is refused, never guessed."""
    ckpt = torch.load(builtin_runs["linear"].checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["net"] = {"hidden_units": 0, "num_classes": 10, "head": "sigmoid", "init": "keras"}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    expected = "checkpoint network: the network record has no _target_ (keys: ['head', 'hidden_units', 'init', "
    with pytest.raises(MnistlabError, match=re.escape(expected)):
        Classifier.load_from_checkpoint(old)
    result = run_script("predict.py", f"ckpt_path={old}", "index=998")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {old}: {expected}"), result.stderr[-2000:]


BROKEN_NETS = '''
"""Networks that break the contract: flat (B, 784) inputs, and nothing to train."""

import torch
from torch import nn


class FlatInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # no flattening: (B, 1, 28, 28) does not fit


class NoWeights(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


class BatchNormed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # BatchNorm1d cannot train on a batch of one (B=1, 16)


class Doubled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.double()  # float64 weights, as a user's float64 code builds them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Asserting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == 32, "expects 32x32 images"  # a research network's own input check
        return self.body(x)


class Sized(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
'''


def broken_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, config: str) -> Path:
    """``brokennets.py`` on PYTHONPATH and ``model/<model>.yaml`` holding ``config``; returns the config folder."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "brokennets.py").write_text(BROKEN_NETS)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / f"{model}.yaml").write_text(config)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "conf"


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        # Before: RuntimeError traceback from checkpoint_records.output_width, and the run folder left behind.
        ("flat_input", (), "error: brokennets.FlatInput failed on a (1, 1, 28, 28) image: mat1 and mat2 shapes "
         "cannot be multiplied (28x28 and 784x10); a network must map (B, 1, 28, 28) images to (B, C) logits "
         "(flatten them itself if it needs (B, 784))"),
        # Before: the AssertionError's traceback (only torch's error types were translated).
        ("asserting", (), "error: brokennets.Asserting failed on a (1, 1, 28, 28) image: expects 32x32 images; a "
         "network must map (B, 1, 28, 28) images to (B, C) logits (flatten them itself if it needs (B, 784))"),
        # Before: "ValueError: optimizer got an empty parameter list" inside trainer.fit.
        ("no_weights", (), "error: brokennets.NoWeights has no trainable parameters, so training would change "
         "nothing; give it layers with weights (nn.Linear, nn.Conv2d, ...) or unfreeze them"),
        # Before: "RuntimeError: mat1 and mat2 must have the same dtype, but got Float and Double" at the first step.
        ("doubled", (), "error: brokennets.Doubled has float64 weights (body.1.weight), but trainer.precision=32-true "
         "feeds it float32 images: build it in float32 (drop its .double()), or train it in float64 with "
         "trainer.precision=64"),
        ("doubled", ("trainer.precision=bf16-mixed",), "error: brokennets.Doubled has float64 weights (body.1.weight), "
         "but trainer.precision=bf16-mixed feeds it float32 images: build it in float32 (drop its .double()), or "
         "train it in float64 with trainer.precision=64"),
        # Before: "error: model: empty(): argument 'size' ...", without the setting it came from.
        ("sized", ("model.hidden=null",), "error: model: brokennets.Sized(hidden=None) refused its settings: "
         "empty(): argument 'size' (position 1) must be tuple of ints, but found element of type NoneType at pos 0"),
        # A value of the wrong type is caught before Hydra runs, by the command-line check of the searchpath's configs.
        ("sized", ("model.hidden=abc",), "error: model.hidden='abc' is not an integer"),
    ],
)  # fmt: skip
def test_a_network_that_breaks_the_contract_is_one_line_before_training(
    model: str, extra: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "".join(part.title() for part in model.split("_"))
    arguments = "hidden: 16\n" if model == "sized" else ""
    conf = broken_net(tmp_path, monkeypatch, model, f"_target_: brokennets.{target}\n{arguments}")
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", f"hydra.searchpath=[file://{conf}]", f"model={model}", *extra,
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == message
    assert not run_dir.exists()  # refused before any work: no run folder left behind


def test_a_float64_network_trains_under_trainer_precision_64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the refusal of a float64 network under 32-bit precision names: Lightning casts images and network."""
    conf = broken_net(tmp_path, monkeypatch, "doubled", "_target_: brokennets.Doubled\n")
    run_dir = tmp_path / "run"
    result = run_script("train.py", f"hydra.searchpath=[file://{conf}]", "model=doubled", "trainer.precision=64",
                        "trainer.max_epochs=1", "trainer.limit_train_batches=5",
                        "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "metrics.json").is_file()
    # Its checkpoint evaluates and predicts (before: "mat1 and mat2 must have the same dtype", a traceback, exit 1).
    for script, args in (("evaluate.py", ()), ("predict.py", ("index=1",)), ("export.py", ("format=torchscript",))):
        result = run_script(script, f"ckpt_path={run_dir}", *args, cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_a_batch_norm_network_with_a_last_batch_of_one_image_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """54,977 training images at batch 32 leave one image for every epoch's last batch (data.val_size=5023)."""
    conf = broken_net(tmp_path, monkeypatch, "batch_normed", "_target_: brokennets.BatchNormed\n")
    common = (f"hydra.searchpath=[file://{conf}]", "model=batch_normed", "data.val_size=5023",
              "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")  # fmt: skip
    expected = (
        "error: the last training batch of every epoch holds 1 image, and brokennets.BatchNormed cannot train on one "
        "(Expected more than 1 value per channel when training, got input size torch.Size([1, 16])); change "
        "data.batch_size so that it holds more"
    )
    for engine in ("auto", "per_step"):
        run_dir = tmp_path / engine
        result = run_script("train.py", *common, f"engine={engine}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        # Before: "ValueError: Expected more than 1 value per channel when training" at the end of the first epoch.
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1].endswith(expected), result.stderr[-2000:]
        assert not (run_dir / "checkpoints").exists()  # refused before the first batch
    # An epoch cut short by limit_train_batches never reaches that batch: it trains.
    result = run_script("train.py", *common, "trainer.limit_train_batches=5", f"hydra.run.dir={tmp_path / 'short'}",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_batch_norm_network_that_stops_before_its_one_image_batch_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer.max_steps short of an epoch never reaches the epoch's last batch, as limit_train_batches does not."""
    conf = broken_net(tmp_path, monkeypatch, "batch_normed", "_target_: brokennets.BatchNormed\n")
    result = run_script("train.py", f"hydra.searchpath=[file://{conf}]", "model=batch_normed",
                        "data.val_size=5023", "trainer.max_steps=20", "callbacks.progress_bar.refresh_rate=0",
                        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    # Before: refused ("the last training batch of every epoch holds 1 image ...") though batch 1,719 never comes.
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
