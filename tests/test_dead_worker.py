"""A joblib worker killed under a sweep (out of memory, ``kill -9``): one line, and the same command continues."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, run_script, write_idx_set

TINY = ("data.download=false", "data.verify=false", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")


def test_a_killed_joblib_worker_ends_the_sweep_in_one_line_that_continues_it(tmp_path: Path) -> None:
    root = write_idx_set(tmp_path / "tiny", n_train=60, n_test=20)
    sweep = tmp_path / "sweep"
    command = ("train.py", "-m", "cv=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"data.root={root}",
               *TINY, f"hydra.sweep.dir={sweep}")  # fmt: skip
    chaos = {"CHAOS_KILL": "startup:1", "CHAOS_SCOPE": "process", "PYTHONPATH": str(ROOT / "tests" / "chaos")}
    killed = run_script(*command, env=chaos)
    # Before: joblib's TerminatedWorkerError as a 30-line traceback, and no word on how to go on.
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "Traceback" not in killed.stderr, killed.stderr[-3000:]
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: a joblib worker died while it ran this sweep's jobs (exit code SIGKILL"), last
    assert last.endswith(f"continue with the same command plus hydra.sweep.dir={sweep} (finished jobs are kept, "
                         "interrupted ones resume from their last checkpoint)"), last  # fmt: skip
    again = run_script(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(sweep.glob("*/job.json"))) == 2 and (sweep / "ensembles" / "0" / "ensemble.json").is_file()
