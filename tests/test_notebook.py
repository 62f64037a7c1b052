"""The notebook's two networks, trained end to end on real MNIST by the user-facing script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_script


@pytest.mark.parametrize(("experiment", "threshold"), [("notebook_linear", 0.920), ("notebook_hidden", 0.974)])
def test_notebook_accuracy(experiment: str, threshold: float, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", f"experiment={experiment}", f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= threshold, metrics
    assert metrics["epochs"] == 5 and "val/acc_best" not in metrics  # trained on all 60k, no validation
    assert f"test/acc {metrics['test/acc']:.4f}" in result.stdout.strip().splitlines()[-1]
    assert list(run_dir.glob("events.out.tfevents.*"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["head"] == "sigmoid"
