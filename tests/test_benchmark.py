"""benchmarks/benchmark.py runs the pipelines and the start-up check on real MNIST (a few steps, no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them


def test_benchmark_runs_a_few_steps(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_script(
        "../benchmarks/benchmark.py",
        "epochs=1",
        "warmup=1",
        "typical=true",
        "startup_runs=1",
        f"json={out}",
        "data.batch_size=5500",  # 55k / 5,500: 10 optimizer steps per epoch
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = (
        "(a) plain PyTorch loop", "(b) mnistlab, default run [chunked]",
        "(b1) mnistlab, forced per-step [per_step]", "(f) Lightning's floor: bare LightningModule",
        "(c) typical Lightning pipeline", "start-up: first",
    )  # fmt: skip
    for name in names:
        assert name in result.stdout
    report = json.loads(out.read_text())
    pipelines = report["pipelines"]
    assert [p["steps_per_epoch"] for p in pipelines] == [10, 10, 10, 10, 10]
    timed = pipelines[1:]  # each epoch of (b), (b1), (f) and (c) next to an epoch of (a): the warm-up's and one
    assert all(len(p["epoch_seconds"]) == len(p["baseline_seconds"]) == 2 and len(p["measured"]) == 1 for p in timed)
    assert pipelines[0]["epoch_seconds"] == [p["baseline_seconds"][1] for p in timed]  # (a): its measured epochs
    for p in timed:  # one measured epoch: its ratio is to the plain-loop epoch run just before it
        assert p["ratio"] == p["epoch_seconds"][1] / p["baseline_seconds"][1]
        assert p["cpu_ratio"] == p["epoch_cpu_seconds"][1] / p["baseline_cpu_seconds"][1]
    assert report["device"] == "cpu"
    assert report["startup"]["first_step_s"][0] > 0 and report["startup"]["import_lightning_s"][0] > 0
    # (b) and (b1) trained with the training config's own logger and checkpoints, each in its own folder.
    for engine in ("auto", "per_step"):
        assert list((tmp_path / "run" / engine).glob("events.out.tfevents.*"))
        assert (tmp_path / "run" / engine / "checkpoints" / "last.ckpt").is_file()
