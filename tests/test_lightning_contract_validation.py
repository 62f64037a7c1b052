"""Lightning's contract on real MNIST, continued: when validation runs, and what it ranks.

The style and helpers of ``test_lightning_contract.py``: each test fits through ``compose`` (what
``scripts/train.py`` builds) and checks the documented effect under the engine the run chose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lightning_contract import fit, scalars

pytestmark = pytest.mark.slow


def test_a_time_based_val_check_interval_validates_once_the_time_is_up(tmp_path: Path) -> None:
    # "DD:HH:MM:SS": after the batch in which the interval runs out; zero seconds is after every batch.
    run = fit(tmp_path, "trainer.max_epochs=1", "data.batch_size=5000", "trainer.val_check_interval=00:00:00:00")
    assert run.engine.chunk is None and "trainer.val_check_interval" in run.engine.reason
    assert [s for s, _ in scalars(run)["val/acc"]] == list(range(11))  # 11 batches of the 55k images, 11 validations
