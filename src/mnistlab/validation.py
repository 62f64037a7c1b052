"""Range checks that name the setting, its value and what is allowed, in one sentence."""

from __future__ import annotations

from typing import Any

from mnistlab.errors import ConfigError


def check_number(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Raises ``ConfigError`` unless ``value`` is a number in the given range.

    Args:
        key: The config key shown to the user, e.g. ``"optimizer.lr"``.
        value: The value to check.
        integer: Require an int (bools are refused).
        low: Smallest allowed value (or lower bound, see ``low_open``); None for no bound.
        high: Largest allowed value; None for no bound.
        low_open: ``low`` itself is not allowed (``> low`` instead of ``>= low``).
    """
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        allowed = f"{kind} in {low}-{high}"
    elif low is not None:
        allowed = f"{kind} {'>' if low_open else '>='} {low}"
    else:
        allowed = f"{kind} <= {high}"
    types = (int,) if integer else (int, float)
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range: must be {allowed}")
