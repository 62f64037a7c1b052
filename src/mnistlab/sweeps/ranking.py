"""What ranks the runs of a sweep: their validation score, and the test set only where none has one.

``mnistlab.training.fit_and_test`` records the score of the best checkpoint under its monitor's name:
``val/acc_best`` for the default checkpoint, ``val/loss_best`` for one kept by the lowest ``val/loss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# Each score a run may be ranked by, in order of preference, and whether higher is better.
HIGHER_IS_BETTER = {"val/acc_best": True, "val/loss_best": False, "test/acc": True}


class Scored(Protocol):
    def get(self, key: str) -> float | None: ...


def ranking_key(runs: Sequence[Scored]) -> str:
    """The first score of ``HIGHER_IS_BETTER`` that any of ``runs`` recorded (``test/acc`` when none did)."""
    return next((key for key in HIGHER_IS_BETTER if any(run.get(key) is not None for run in runs)), "test/acc")


def best_first(value: float | None, key: str) -> tuple[bool, float]:
    """A sort key that puts the best ``value`` of ``key`` first and runs without one last."""
    if value is None:
        return True, 0.0
    return False, -value if HIGHER_IS_BETTER[key] else value


def describe(key: str) -> str:
    """The summary's line that says what ranks the runs."""
    if key == "test/acc":
        return "Ranked by test/acc: these runs have no validation set (data.val_size=0)."
    best = "best validation accuracy" if HIGHER_IS_BETTER[key] else "lowest validation loss"
    return f"Ranked by the {best} ({key}); test/acc is only reported."
