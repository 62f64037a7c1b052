"""No profiling, as ``trainer.profiler=null`` asks, without the cost of Lightning's do-nothing profiler.

Lightning wraps every hook call in ``trainer.profiler.profile(name)``: for every callback and
every hook, about 50 regions a per-step batch with the default callbacks. With no profiler it
uses ``PassThroughProfiler``, whose ``profile`` is a generator-based context manager that
starts and stops nothing; making that generator is about 0.7 us a region, some 40 us a
per-step batch on a 2-core CPU (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()  # reentrant and stateless: one for every region


class NoProfiler(PassThroughProfiler):
    """``PassThroughProfiler`` whose regions are one shared ``nullcontext``: the same nothing, measured faster.

    Its ``start``, ``stop``, ``summary`` and ``describe`` are Lightning's do-nothing ones, so code
    that asks ``isinstance(trainer.profiler, PassThroughProfiler)`` still reads "no profiler".
    """

    def profile(self, action_name: str) -> Any:  # Lightning names every region; none is timed
        return _NOTHING


def no_profiler_for(trainer_args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``profiler`` argument to add to a Trainer built from ``trainer_args`` (``cfg.trainer``): ``NoProfiler``
    where none is set.

    Left to Lightning under ``barebones=True``, which refuses any profiler object.
    """
    if trainer_args.get("profiler") is None and not trainer_args.get("barebones", False):
        return {"profiler": NoProfiler()}
    return {}
