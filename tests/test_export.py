"""scripts/export.py: ONNX and TorchScript files that agree with the checkpoint."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import TrainedRun, run_script

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them


def test_onnx_export_predicts_like_the_checkpoint(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    # Beside the checkpoint by default: a copy of it in a folder of its own, given as a run folder.
    out = tmp_path / "run" / "checkpoints"
    out.mkdir(parents=True)
    shutil.copy(notebook_hidden_run.checkpoint, out / "last.ckpt")
    result = run_script("export.py", f"ckpt_path={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checked on 100 test images" in result.stdout
    model = out / "model.onnx"
    assert result.stdout.startswith(f"wrote {model}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run folder, no log, nothing else
    assert sorted(p.name for p in out.iterdir()) == ["last.ckpt", "model.onnx"]
    # A check that fails leaves the earlier export as it was, and a folder it made itself is gone.
    written = model.read_bytes()
    for folder in (out, tmp_path / "new"):
        failed = run_script("export.py", f"ckpt_path={tmp_path / 'run'}", f"output_dir={folder}", "tolerance=0")
        assert failed.returncode == 2, failed.stderr[-3000:]  # ONNX Runtime's float kernels differ by ~1e-7
        assert failed.stderr.strip().splitlines()[-1].startswith("error: export check failed: onnx output differs")
    assert model.read_bytes() == written and sorted(p.name for p in out.iterdir()) == ["last.ckpt", "model.onnx"]
    assert not (tmp_path / "new").exists()
    predictions = []
    for source in (notebook_hidden_run.checkpoint, model):
        answer = run_script("predict.py", f"ckpt_path={source}", "index=998", "format=json")
        assert answer.returncode == 0, answer.stderr[-3000:]
        predictions.append(json.loads(answer.stdout)[0])
    from_ckpt, from_onnx = predictions
    assert from_ckpt["prediction"] == from_onnx["prediction"] == 8
    assert np.allclose(from_ckpt["probabilities"], from_onnx["probabilities"], atol=1e-5)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch dimension is dynamic
        (probs,) = session.run(None, {"images": np.random.default_rng(0).random((batch, 1, 28, 28), np.float32)})
        assert probs.shape == (batch, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_an_export_that_replaces_another_says_which_and_from_which_checkpoint(
    notebook_hidden_run: TrainedRun, tmp_path: Path
) -> None:
    """Before: exporting best.ckpt, then last.ckpt of the same run, replaced the first model.onnx without a word."""
    out = tmp_path / "run" / "checkpoints"
    out.mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        shutil.copy(notebook_hidden_run.checkpoint, out / name)
    for fmt, model in (("onnx", out / "model.onnx"), ("torchscript", out / "model.pt")):
        first = run_script("export.py", f"ckpt_path={out / 'best.ckpt'}", f"format={fmt}", cwd=tmp_path)
        assert first.returncode == 0 and "replaced" not in first.stdout, first.stderr[-3000:]
        second = run_script("export.py", f"ckpt_path={out / 'last.ckpt'}", f"format={fmt}", cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert second.stdout.splitlines()[:2] == [
            f"wrote {model}: (N, 1, 28, 28) pixels in [0, 1] -> (N, 10) probabilities",
            f"replaced the earlier {model}, exported from {out / 'best.ckpt'} (output_dir=... keeps both)",
        ]
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "last.ckpt", "model.onnx", "model.pt"]


def test_torchscript_export(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = run_script(
        "export.py", f"ckpt_path={notebook_hidden_run.checkpoint}", "format=torchscript", f"output_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still loadable
        model = torch.jit.load(str(out / "model.pt"))
    probs = model(torch.rand(5, 1, 28, 28))
    assert probs.shape == (5, 10) and torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
    bad = run_script("export.py", f"ckpt_path={notebook_hidden_run.checkpoint}", "format=tflite", f"output_dir={out}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: format=tflite must be one of ['onnx', 'torchscript']"
    )


def test_a_failed_export_leaves_no_folder_it_made(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "weights.pt")  # no checkpoint: refused after the folders were made
    result = run_script("export.py", f"ckpt_path={tmp_path / 'weights.pt'}", f"output_dir={tmp_path / 'a' / 'b'}")
    assert result.returncode == 2 and "not a training checkpoint" in result.stderr, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]
