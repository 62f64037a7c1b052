"""scripts/benchmark.py runs the three pipelines and the start-up check on real MNIST (a few steps, no timings)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script


def test_benchmark_runs_a_few_steps(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_script(
        "benchmark.py",
        "epochs=1",
        "warmup=1",
        "typical=true",
        "startup_runs=1",
        f"json={out}",
        "+trainer.limit_train_batches=2",
        "data.steps_per_chunk=5",  # 2 chunks of 5: 10 optimizer steps per epoch
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("(a) plain PyTorch loop", "(b) mnistlab", "(c) typical Lightning pipeline", "start-up: first"):
        assert name in result.stdout
    report = json.loads(out.read_text())
    pipelines = report["pipelines"]
    assert [p["steps_per_epoch"] for p in pipelines] == [10, 10, 10]
    assert all(len(p["epoch_seconds"]) == 2 and len(p["measured"]) == 1 for p in pipelines)
    assert pipelines[0]["ratio"] == 1.0 and report["device"] == "cpu"
    assert report["startup"]["first_step_s"][0] > 0 and report["startup"]["import_lightning_s"][0] > 0
    # (b) trained with the training config's own logger and checkpoints.
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
