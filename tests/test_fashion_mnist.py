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
    """Test pieces saved as PNG files are predicted as by index=, inverted too; pictures of them nearly so."""
    path = DATA_DIR / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    test = parse_idx(read_bytes(path), path, "images")[:n].numpy()  # (n, 28, 28) uint8
    rng = np.random.default_rng(0)
    for folder in ("files", "inverted", "photos"):
        (tmp_path / folder).mkdir()
    for i, image in enumerate(test):
        Image.fromarray(image).save(tmp_path / "files" / f"{i:03d}.png")  # the dataset's own form
        Image.fromarray(255 - image).save(tmp_path / "inverted" / f"{i:03d}.png")  # dark on light, 28x28
        # What a picture of the piece looks like: dark on light, 4x larger, in a margin, on white paper,
        # tinted paper, with noise, or under a lighting gradient (one of the four in turn).
        big = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC)) / 255
        page = np.ones((140, 160))
        page[10:122, 30:142] = big
        page = [page, page * 0.86, page + rng.normal(0, 0.03, page.shape), page * np.linspace(0.85, 1, 160)][i % 4]
        Image.fromarray((page.clip(0, 1) * 255).round().astype(np.uint8)).save(tmp_path / "photos" / f"{i:03d}.png")
    answers = {}
    for name in ("files", "inverted", "photos"):
        result = run_script("predict.py", f"ckpt_path={checkpoint}", f"image={tmp_path / name}", "format=json")
        assert result.returncode == 0, result.stderr[-3000:]
        records = json.loads(result.stdout)
        assert not any(r.get("warning") for r in records), records  # no digit checks on clothing
        answers[name] = np.array([r["prediction"] for r in records])
    by_index = run_script("predict.py", f"ckpt_path={checkpoint}", f"index={list(range(n))}", "format=json")
    assert by_index.returncode == 0, by_index.stderr[-3000:]
    expected = np.array([r["prediction"] for r in json.loads(by_index.stdout)])
    assert (answers["files"] == expected).all() and (answers["inverted"] == expected).all()
    agree = (answers["photos"] == expected).mean()
    print(f"pictures of the pieces (white or tinted paper, noise, a lighting gradient): {agree:.0%} as by index=")
    assert agree >= 0.9
