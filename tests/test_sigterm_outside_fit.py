"""A SIGTERM outside Lightning's fit and test (here between them) ends with the continue line and 143, too."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script, self_signal_module, tiny_linear_args

# A callback of the test's own (on PYTHONPATH): the first run (not its resume) sends itself SIGTERM as its fit ends,
# once Lightning has given the signal back to the handler it found (its own runs only inside the fit and the test).
SELF_SIGNAL = """
import os, signal
import lightning.pytorch as pl

class SigtermAtFitEnd(pl.Callback):
    def on_fit_end(self, trainer, *args):
        if trainer.ckpt_path is None:
            os.kill(os.getpid(), signal.SIGTERM)
"""


def test_a_sigterm_between_the_fit_and_the_test_says_how_to_continue(tmp_path: Path) -> None:
    env = self_signal_module(tmp_path, SELF_SIGNAL)
    run_dir = tmp_path / "run"
    stopped = run_script(
        "train.py", *tiny_linear_args(tmp_path, max_epochs=2),
        "+callbacks.self_signal._target_=selfsignal.SigtermAtFitEnd", f"hydra.run.dir={run_dir}", env=env,
    )  # fmt: skip
    # The process died of the signal (-15) without a word: the user did not learn that the run can continue.
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"interrupted; continue with: python scripts/train.py resume={run_dir} "
        "(checkpoints/last.ckpt: 2 epochs, 10 steps done)"
    ), last_line
    assert not (run_dir / "metrics.json").exists()

    resumed = run_script("train.py", f"resume={run_dir}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
