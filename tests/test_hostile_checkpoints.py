"""A checkpoint is data, not code: records that would call anything but a network class are refused, in one line."""

from __future__ import annotations

import os
import re
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning
import pytest
import torch
from conftest import run_script

from mnistlab.errors import MnistlabError
from mnistlab.models import MLP
from mnistlab.systems import Classifier

HOSTILE = """
from pathlib import Path


def make_marker(path):
    Path(path).touch()


class Marker:
    def __init__(self, path):
        Path(path).touch()
"""


@pytest.fixture
def hostile_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``hostile.py`` (a function and a plain class that create a marker file) on PYTHONPATH and sys.path."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "hostile.py").write_text(HOSTILE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(code))
    return code


def checkpoint(path: Path, mnist_dir: Path, net: dict | None = None, optimizer: dict | None = None) -> Path:
    """A real (untrained) linear-model checkpoint, with its network or optimizer record replaced."""
    system = Classifier(MLP(hidden_units=0), net_config={"_target_": "mnistlab.models.MLP", "hidden_units": 0})
    hparams = dict(system.hparams)
    hparams["net"] = net or hparams["net"]
    hparams["optimizer"] = optimizer or hparams["optimizer"]
    ckpt = {
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": system.state_dict(),
        "hyper_parameters": hparams,
        "datamodule_hyper_parameters": {"root": str(mnist_dir)},
    }
    torch.save(ckpt, path)
    return path


def net_records(marker: Path) -> dict[str, dict]:
    return {
        "os.system": {"_target_": "os.system", "command": f"touch {marker}"},
        "builtins.eval": {"_target_": "builtins.eval", "source": f"open({str(marker)!r}, 'w')"},
        "function": {"_target_": "hostile.make_marker", "path": str(marker)},
        "class": {"_target_": "hostile.Marker", "path": str(marker)},
        "nested": {"_target_": "mnistlab.models.MLP", "hidden_units": {"_target_": "hostile.make_marker", "path": "x"}},
        "interpolation": {"_target_": "mnistlab.models.MLP", "hidden_units": 0, "init": "${oc.env:HOME}"},
    }


EXPECTED = {
    "os.system": "refused os.system, the standard library holds no network",
    "builtins.eval": "refused builtins.eval, the standard library holds no network",
    "function": "refused hostile.make_marker, it is a function, not a torch.nn.Module subclass",
    "class": "refused hostile.Marker, it is the class hostile.Marker, not a torch.nn.Module subclass",
    "nested": "checkpoint network.hidden_units: refused, nested _target_",
    "interpolation": "checkpoint network.init='${oc.env:HOME}': refused, interpolations are not allowed",
}


def test_the_untouched_checkpoint_predicts(mnist_dir: Path, tmp_path: Path) -> None:
    """The baseline of the tests below: only the replaced record makes them fail."""
    ckpt = checkpoint(tmp_path / "ok.ckpt", mnist_dir)
    result = run_script("predict.py", f"ckpt_path={ckpt}", "index=998", "format=json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(Classifier.load_from_checkpoint(ckpt).net, MLP)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_hostile_network_record_is_refused_before_anything_runs(
    case: str, hostile_module: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    ckpt = checkpoint(tmp_path / "hostile.ckpt", mnist_dir, net=net_records(marker)[case])
    commands = (("evaluate.py",), ("predict.py", "index=998"), ("export.py", "format=onnx"))
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:  # mostly interpreter start-up: run them at once
        results = pool.map(
            lambda c: run_script(c[0], f"ckpt_path={ckpt}", *c[1:], f"hydra.run.dir={tmp_path / c[0]}"), commands
        )
    for (script, *_), result in zip(commands, results, strict=True):
        assert result.returncode == 2, (script, result.stderr[-3000:])
        # Lightning's own INFO notes (evaluate.py builds its trainer first) aside, the error is one line.
        [line] = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO: ")]
        assert "Traceback" not in result.stderr
        assert line.startswith(f"error: {ckpt}: ") and EXPECTED[case] in line, (script, line)
        assert not marker.exists()
    with pytest.raises(MnistlabError, match="refused") as refused:
        Classifier.load_from_checkpoint(ckpt)
    assert EXPECTED[case] in str(refused.value)
    assert not marker.exists()


def test_hostile_optimizer_record_is_refused(hostile_module: Path, mnist_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for target in ("hostile.make_marker", "hostile.Marker", "os.system"):
        ckpt = checkpoint(tmp_path / "hostile.ckpt", mnist_dir, optimizer={"target": target, "path": str(marker)})
        with pytest.raises(MnistlabError, match=f"checkpoint optimizer: refused {target}, "):
            Classifier.load_from_checkpoint(ckpt)
    assert not marker.exists()


def test_a_network_config_that_no_checkpoint_could_rebuild_is_refused_at_training() -> None:
    factory = {"_target_": "torchvision.models.resnet18", "num_classes": 10}  # a factory function, not a class
    with pytest.raises(MnistlabError, match=r"model: refused torchvision\.models\.resnet18, it is a function"):
        Classifier(MLP(hidden_units=0), net_config=factory)
    with pytest.raises(ValueError, match="the network returns 7 logits but there are 10 classes"):
        Classifier(MLP(num_classes=7), class_names=[str(i) for i in range(10)])


def test_a_damaged_checkpoint_or_one_with_nan_weights_is_refused(mnist_dir: Path, tmp_path: Path) -> None:
    """Before: a flipped byte in a weight loaded (torch skips the zip's CRCs) and evaluated to a lower accuracy."""
    good = checkpoint(tmp_path / "ok.ckpt", mnist_dir)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    data[member.header_offset + 30 + name_length + extra_length + 10] ^= 0xFF  # a byte of the first weight
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(data)
    torch.load(damaged, weights_only=True)  # what Lightning would have read without a word
    ckpt = torch.load(good, weights_only=True)
    first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][first][0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    expected = {
        damaged: f"error: {damaged}: the file is damaged ({member.filename} fails its CRC check); "
        "use another checkpoint",
        tmp_path / "nan.ckpt": f"error: {tmp_path / 'nan.ckpt'}: the weights hold NaN or infinite values ({first}); "
        "use another checkpoint",
    }
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: run_script("evaluate.py", f"ckpt_path={p}", cwd=tmp_path), expected))
    for result, message in zip(results, expected.values(), strict=True):
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == message, result.stderr[-2000:]


def test_a_checkpoint_without_its_weights_or_a_list_is_refused_in_one_line(mnist_dir: Path, tmp_path: Path) -> None:
    """Before: ``KeyError: 'state_dict'`` and ``AttributeError: 'list' object has no attribute 'get'`` tracebacks."""
    from mnistlab.checkpoints import load_system

    ckpt = torch.load(checkpoint(tmp_path / "ok.ckpt", mnist_dir), weights_only=True)
    del ckpt["state_dict"]
    torch.save(ckpt, tmp_path / "no_weights.ckpt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(MnistlabError, match=r"no_weights.ckpt: not a complete checkpoint \(no state_dict"):
        load_system(tmp_path / "no_weights.ckpt")
    with pytest.raises(MnistlabError, match=r"list.pt: not a training checkpoint \(torch.save of a list\)"):
        load_system(tmp_path / "list.pt")


def test_a_checkpoint_cut_short_says_so_in_every_script(mnist_dir: Path, tmp_path: Path) -> None:
    """Before: ``not a readable checkpoint ([Errno 22] Invalid argument)``, which names no cause."""
    good = checkpoint(tmp_path / "ok.ckpt", mnist_dir)
    cut = tmp_path / "cut.ckpt"
    size = good.stat().st_size // 2
    cut.write_bytes(good.read_bytes()[:size])  # a full disk or a killed copy: the zip's directory is lost
    message = (
        f"error: {cut}: the file is cut short or damaged: {size} bytes of a zip archive (torch.save's format) "
        "without the directory that ends a complete one; use another checkpoint"
    )
    commands = [
        ("evaluate.py", f"ckpt_path={cut}"),
        ("predict.py", f"ckpt_path={cut}", "index=1"),
        ("export.py", f"ckpt_path={cut}", f"output_dir={tmp_path / 'export'}"),
        ("train.py", f"ckpt_path={cut}", "model=linear", "trainer.max_epochs=2"),
        ("serve.py", f"ckpt_path={cut}"),  # refused before it binds a port
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_script(*c, cwd=tmp_path, timeout=120), commands))
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr[-2000:])
        assert result.stderr.strip().splitlines()[-1] == message, (command, result.stderr[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ckpt", "ok.ckpt"]  # no run folder left behind


def test_weights_that_do_not_fit_their_network_name_the_first_reason(mnist_dir: Path, tmp_path: Path) -> None:
    """Before: only torch's heading, ``(Error(s) in loading state_dict for Classifier:)``."""
    from mnistlab.checkpoints import load_system

    ckpt = torch.load(checkpoint(tmp_path / "ok.ckpt", mnist_dir), weights_only=True)
    ckpt["hyper_parameters"]["net"] = {**ckpt["hyper_parameters"]["net"], "hidden_units": 32}
    torch.save(ckpt, tmp_path / "other_record.ckpt")
    missing = 'Missing key(s) in state_dict: "net.layers.3.weight", "net.layers.3.bias"'
    with pytest.raises(MnistlabError, match=re.escape(f"the network its record builds ({missing})")):
        load_system(tmp_path / "other_record.ckpt")
    ckpt = torch.load(tmp_path / "ok.ckpt", weights_only=True)
    ckpt["state_dict"] = {k: v[:5] if k.endswith("weight") else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "other_shape.ckpt")
    size = "size mismatch for net.layers.1.weight: copying a param with shape torch.Size([5, 784]) from checkpoint"
    with pytest.raises(MnistlabError, match=re.escape(f"the network its record builds ({size}")):
        load_system(tmp_path / "other_shape.ckpt")
