"""A minimum of epochs or steps above the maximum: Lightning stops at the maximum, so it is refused before any work."""

from __future__ import annotations

import pytest

from mnistlab.config_checks import check_trainer_counts
from mnistlab.errors import ConfigError


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"max_epochs": 2, "min_epochs": 5}, "trainer.min_epochs=5 is above trainer.max_epochs=2: "),
        ({"max_epochs": 5, "max_steps": 10, "min_steps": 20}, "trainer.min_steps=20 is above trainer.max_steps=10: "),
    ],
)
def test_a_minimum_above_the_maximum_is_refused(trainer: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_trainer_counts(trainer)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    "trainer",
    [
        {"max_epochs": 5, "min_epochs": 5},
        {"max_epochs": -1, "max_steps": 100, "min_epochs": 3},  # no maximum of epochs: the steps end the run
        {"max_epochs": 5, "max_steps": -1, "min_steps": 20},
        {"max_epochs": 5, "min_epochs": None, "min_steps": None},
    ],
)
def test_a_minimum_within_the_maximum_passes(trainer: dict) -> None:
    check_trainer_counts(trainer)
