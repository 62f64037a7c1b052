"""Fashion-MNIST through the same data module: accuracy and clothing names in what a run writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, run_script, train
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from mnistlab.data import FASHION_MNIST
from mnistlab.data.idx import parse_idx, read_bytes

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them


def test_hidden_network_reaches_87_percent_with_clothing_names(tmp_path: Path) -> None:
    run = train(tmp_path / "run", "data=fashion_mnist", "model=hidden", "trainer.max_epochs=10")
    assert run.metrics["test/acc"] >= 0.87, run.metrics
    ckpt = torch.load(run.dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"] == list(FASHION_MNIST.classes)
    assert ckpt["datamodule_hyper_parameters"]["dataset"] == "fashion_mnist"
    images: set[str] = set()
    for events in run.dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={IMAGES: 0})
        accumulator.Reload()
        images |= set(accumulator.Tags()["images"])
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= images
    pictures_predict_like_the_test_set(run.checkpoint, tmp_path)


def pictures_predict_like_the_test_set(checkpoint: Path, tmp_path: Path, n: int = 100) -> None:
    """Test images saved as PNG files are predicted as by index=; photographed-like copies nearly so."""
    path = DATA_DIR / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    test = parse_idx(read_bytes(path), path, "images")[:n].numpy()  # (n, 28, 28) uint8
    for i, image in enumerate(test):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")  # the dataset's own form
        # dark on light, 4x larger, in a margin: what a picture of the piece looks like
        big = Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (160, 140), 255)
        canvas.paste(big, (30, 10))
        (tmp_path / "photos").mkdir(exist_ok=True)
        canvas.save(tmp_path / "photos" / f"{i:03d}.png")
    answers = {}
    for name, source in (
        ("index", f"index={list(range(n))}"),
        ("files", f"image={tmp_path}"),
        ("photos", f"image={tmp_path / 'photos'}"),
    ):
        result = run_script("predict.py", f"ckpt_path={checkpoint}", source, "format=json")
        assert result.returncode == 0, result.stderr[-3000:]
        records = json.loads(result.stdout)
        assert not any(r.get("warning") for r in records), records  # no digit checks on clothing
        answers[name] = np.array([r["prediction"] for r in records])
    assert (answers["files"] == answers["index"]).all()
    agree = (answers["photos"] == answers["index"]).mean()
    print(f"photographed-like copies: {agree:.0%} predicted as the test images")
    assert agree >= 0.9
