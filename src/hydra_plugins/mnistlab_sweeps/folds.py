"""``cv=K`` in a sweep: every configuration the sweeper makes runs once per fold (``data.fold=0..K-1``)."""

from __future__ import annotations

import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from mnistlab.user_errors import EXIT_USER_ERROR

FOLD_KEYS = ("data.fold", "data.folds")


def _key(argument: str) -> str:
    return argument.split("=", 1)[0].lstrip("+~")


def cv_mistake(cv: object, arguments: list[str]) -> str | None:
    """Why ``cv`` and the sweep's ``arguments`` cannot run as a cross-validation, or None."""
    swept = [o for o in OverridesParser.create().parse_overrides(arguments) if o.is_sweep_override()]
    if any(o.key_or_group == "cv" for o in swept):  # Hydra leaves a swept key out of the sweep's own config
        return "cv takes one number of folds per sweep (e.g. cv=5), not a list; run one sweep per K"
    if cv is None:
        return None
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        return f"cv={cv!r} is out of range: must be an integer >= 2 (the number of folds)"
    if given := [a for a in arguments if _key(a) in FOLD_KEYS]:
        return f"cv={cv} runs every fold itself: drop {' '.join(given)}"
    return None


def fold_overrides(config: DictConfig, arguments: list[str]) -> list[str]:
    """The overrides of one job per fold, ``["data.fold=0", ..., "data.fold=K-1"]``; ``[]`` without ``cv``.

    Exits with one ``error:`` line (code 2) for a setting that cannot run, before any job starts.
    """
    cv = config.get("cv")
    if mistake := cv_mistake(cv, arguments):
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    return [] if cv is None else [f"data.fold={i}" for i in range(cv)]
