"""The worked example of a network beyond the notebook's: ``experiment=cnn`` end to end on real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import train

from mnistlab.systems import Classifier


@pytest.mark.slow
def test_cnn_reaches_99_percent(tmp_path: Path) -> None:
    run = train(tmp_path / "run", "experiment=cnn", "seed=1", timeout=1200)  # 8 epochs: 4-5 min on one thread
    assert run.metrics["test/acc"] >= 0.990, run.metrics  # 3-seed mean 99.50% (docs/own-network.md)
    best = run.dir / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["_target_"] == "mnistlab.models.cnn.CNN"
    system = Classifier.load_from_checkpoint(best)
    assert sum(p.numel() for p in system.net.parameters()) == 62_538 <= 120_000
