"""Lightning DDP under Hydra: the child processes join this job's folder instead of making their own.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the script again with
``sys.argv`` plus ``hydra.run.dir=<run.dir>``. In a multirun that re-runs the whole sweep
(``-m`` and the comma lists are in ``sys.argv``), ``run.dir`` is not the job's folder, and
in a submitit job ``sys.argv`` is submitit's runner.
Here the children instead compose the job's saved ``.hydra/config.yaml`` (the exact task
config) and run in the job's own folder, where Hydra writes nothing but their log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import read_write


@contextmanager
def ddp_children_join_this_job(script: str) -> Iterator[None]:
    """Points Lightning's DDP re-launch at this job's config and folder for the duration of the job.

    Args:
        script: Path of the entry script the children run (``__file__`` of ``scripts/train.py``).
    """
    import __main__

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    saved = output_dir / str(hydra_cfg.output_subdir) / "config.yaml"
    if "LOCAL_RANK" in os.environ or hydra_cfg.output_subdir is None or not saved.is_file():
        yield  # a child itself, or nothing saved to rebuild from: Lightning's default
        return
    argv, env, spec = list(sys.argv), dict(os.environ), __main__.__spec__
    sys.argv[:] = [str(Path(script).resolve()), "--config-path", str(saved.parent), "--config-name", "config"]
    # Lightning runs `python -m <__main__.__spec__.name>` when set: in a submitit job that is submitit's runner.
    __main__.__spec__ = None
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = str(output_dir)  # Lightning appends hydra.run.dir=<this>
    try:
        yield
    finally:
        sys.argv[:] = argv
        __main__.__spec__ = spec
        _end_process_group()
        # Lightning exported LOCAL_RANK, MASTER_PORT, ... for its children: left set, the next DDP job
        # of a sweep would take itself for a child and wait for ranks that never come.
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)


def _end_process_group() -> None:
    # The next DDP job of a sweep would otherwise reuse this group, whose other ranks have exited.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
