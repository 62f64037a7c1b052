"""``trainer.profiler=null`` is no profiling (``mnistlab.engine.profiler.NoProfiler``); a profiler asked for is kept."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import DATA_DIR, compose_train
from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

from mnistlab.composition import compose
from mnistlab.engine.profiler import NoProfiler, no_profiler_for

QUIET = ["callbacks.progress_bar.refresh_rate=0", "~callbacks.sample_images", "~callbacks.test_report"]


def test_no_profiler_is_lightnings_pass_through_and_trains_per_step(tmp_path: Path) -> None:
    overrides = [*QUIET, "engine=per_step", "trainer.max_epochs=1", "trainer.limit_train_batches=30"]
    run = compose(compose_train(overrides, tmp_path, DATA_DIR))
    profiler = run.trainer.profiler
    assert type(profiler) is NoProfiler and isinstance(profiler, PassThroughProfiler)
    with profiler.profile("outer") as outer, profiler.profile("inner") as inner:  # Lightning nests regions
        assert outer is None and inner is None
    run.trainer.fit(run.system, datamodule=run.datamodule)
    assert run.trainer.global_step == 30 and profiler.summary() == ""
    assert torch.isfinite(run.trainer.callback_metrics["train/loss"])


def test_the_chunked_engine_still_reads_no_profiler(tmp_path: Path) -> None:
    run = compose(compose_train(QUIET, tmp_path, DATA_DIR))
    assert type(run.trainer.profiler) is NoProfiler and run.engine.chunk is not None, run.engine.reason


def test_a_profiler_asked_for_is_lightnings(tmp_path: Path) -> None:
    run = compose(compose_train([*QUIET, "trainer.profiler=simple"], tmp_path, DATA_DIR))
    assert type(run.trainer.profiler) is SimpleProfiler and run.engine.chunk is None
    assert no_profiler_for({"profiler": None, "barebones": True}) == {}  # barebones refuses any profiler object
    assert isinstance(no_profiler_for({"profiler": None})["profiler"], NoProfiler)
