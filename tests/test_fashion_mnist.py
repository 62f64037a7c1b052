"""Fashion-MNIST through the same data module: accuracy and clothing names in what a run writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import train
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from mnistlab.data import FASHION_MNIST

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
