"""The notebook's two networks, trained end to end on real MNIST by the user-facing script."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TrainedRun, train

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them


def check_notebook_run(run: TrainedRun, threshold: float) -> None:
    metrics = run.metrics
    assert metrics["test/acc"] >= threshold, metrics
    assert metrics["epochs"] == 5 and "val/acc_best" not in metrics  # trained on all 60k, no validation
    assert f"test/acc {metrics['test/acc']:.4f}" in run.stdout.strip().splitlines()[-1]
    assert list(run.dir.glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run.dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no val/acc to rank by
    ckpt = torch.load(run.checkpoint, weights_only=True)
    assert ckpt["hyper_parameters"]["head"] == "sigmoid" and ckpt["hyper_parameters"]["net"]["init"] == "keras"


def test_notebook_linear_accuracy(tmp_path: Path) -> None:
    check_notebook_run(train(tmp_path / "run", "experiment=notebook_linear"), 0.920)


def test_notebook_hidden_accuracy(notebook_hidden_run: TrainedRun) -> None:
    # The recipe gives 97.31-97.36% mean over seeds 1, 2, 3, 42 (std 0.17-0.23, runs 97.15-97.63%), and one
    # seed's figure moves with the CPU's float kernels (seed 42: 97.46% on AMD EPYC, 97.36% on Intel Xeon):
    # 97.0%, about the mean less two std, as the GPU test asks; a broken recipe lands far below (linear: 92.5%).
    check_notebook_run(notebook_hidden_run, 0.970)
