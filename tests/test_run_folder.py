"""Run folders: the README's list of a first run's folder is what the run writes; runs never share one."""

from __future__ import annotations

import fnmatch
import multiprocessing
import multiprocessing.synchronize
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from conftest import ROOT, TrainedRun, run_script, write_idx_set

from mnistlab.run_folders import lock_run_folder

HEADER = "```text unchecked: a folder listing"


def documented() -> list[str]:
    """The paths (or globs) of the README's run-folder block, one per line."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(HEADER) :].split("\n```", 1)[0].splitlines()[1:]
    return [line.split()[0] for line in block if line.strip()]


def test_first_run_folder_is_the_readme_list(notebook_hidden_run: TrainedRun) -> None:
    """``experiment=notebook_hidden`` (the first set-up command): each listed entry matches, nothing else exists."""
    found = sorted(
        str(p.relative_to(notebook_hidden_run.dir)) for p in notebook_hidden_run.dir.rglob("*") if p.is_file()
    )
    listed = documented()
    assert listed, "no listing found in the README"
    for entry in listed:
        assert fnmatch.filter(found, entry), f"the README lists {entry}, the run wrote none"
    extra = [f for f in found if not any(fnmatch.fnmatch(f, entry) for entry in listed)]
    assert not extra, f"the run wrote files the README does not list: {extra}"
    assert "checkpoints/best.ckpt" not in found  # no validation in the notebook recipe: the README says so
    empty = [f for f in found if (notebook_hidden_run.dir / f).stat().st_size == 0]
    assert not empty, f"empty files: {empty}"
    assert (notebook_hidden_run.dir / "hparams.yaml").read_text().strip() not in ("", "{}")


def _claim(base: str, start: multiprocessing.synchronize.Barrier, found: multiprocessing.Queue) -> None:
    from mnistlab.run_folders import claim_folder

    start.wait()  # every process asks for the same name at the same moment
    found.put(claim_folder(base))


def test_processes_asking_for_one_folder_at_once_each_get_their_own(tmp_path: Path) -> None:
    base = str(tmp_path / "outputs" / "2026-12-03" / "12-00-00")
    context = multiprocessing.get_context("spawn")
    start, found = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_claim, args=(base, start, found)) for _ in range(4)]
    for process in processes:
        process.start()
    folders = sorted(found.get(timeout=60) for _ in processes)
    for process in processes:
        process.join()
    assert folders == [base, f"{base}_2", f"{base}_3", f"{base}_4"]


def test_runs_started_together_never_share_a_folder(tmp_path: Path) -> None:
    """Three ``scripts/train.py`` launched at once (a shell loop with ``&``): three folders, each a whole run."""
    data = write_idx_set(tmp_path / "tiny")
    args = [f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10"]
    args += ["model=linear", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda seed: run_script("train.py", *args, f"seed={seed}", cwd=tmp_path), (1, 2, 3)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 3, runs
    seeds = sorted(yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())[-1] for run in runs)
    assert seeds == ["seed=1", "seed=2", "seed=3"]
    print("run folders:", [str(run.relative_to(tmp_path)) for run in runs])


def while_held(run_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``train.py *args`` while another process holds ``run_dir``'s lock, as a running train.py does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        return run_script("train.py", *args, cwd=cwd)
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_another_run_is_using_is_refused(tmp_path: Path) -> None:
    """``hydra.run.dir=X`` while another process trains in X: refused in one line, X left as it is."""
    run_dir = tmp_path / "same"
    result = while_held(run_dir, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: hydra.run.dir={run_dir} is in use by another run that is still going" in result.stderr
    assert list(run_dir.iterdir()) == []  # nothing written into the other run's folder
    # Once that process has ended its lock is gone, and the folder is free again.
    assert lock_run_folder(run_dir) is None


def test_a_resume_of_a_run_still_going_names_the_resume(tmp_path: Path) -> None:
    """``resume=X`` while X trains: the line names resume=X, not hydra.run.dir, and asks to let X end."""
    data = write_idx_set(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    args = [f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10"]
    args += ["model=linear", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"]
    assert run_script("train.py", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    result = while_held(run_dir, f"resume={run_dir}", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    line = f"error: resume={run_dir} is in use by another run that is still going: let it end (or stop it), then resume"
    assert result.stderr.strip().splitlines()[-1] == line, result.stderr[-2000:]
    # Before its first checkpoint, too (it heard "nothing to resume, no checkpoints/last.ckpt was saved yet").
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    (run_dir / "metrics.json").unlink()
    result = while_held(run_dir, f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == line, result.stderr[-2000:]


HOLD = """
import sys, time
from pathlib import Path
from mnistlab.run_folders import lock_run_folder
assert lock_run_folder(Path(sys.argv[1])) is None
print("held", flush=True)
time.sleep(120)
"""


def test_a_job_folder_name_is_one_folder_that_can_be_made(tmp_path: Path) -> None:
    """Before: a slash in a value (``monitor=val/loss``) nested each job a folder deeper, where the summary found
    none, and an Optuna trial's many overrides made a name the file system refused (``File name too long``)."""
    from mnistlab.run_folders import one_folder

    assert one_folder("callbacks.model_checkpoint.monitor=val/loss,model=hidden") == (
        "callbacks.model_checkpoint.monitor=val_loss,model=hidden"
    )
    long = ",".join(f"optimizer.param_{i}=é{i / 7:.6f}" for i in range(30))
    name = one_folder(long)
    assert len(name.encode()) <= 200 and name.endswith("...") and long.startswith(name[:-3])
    (tmp_path / f"12_{name}").mkdir()  # the job number goes before it


def test_a_run_into_a_sweep_folder_is_refused(tmp_path: Path) -> None:
    """Before: the run wrote checkpoints/ beside the sweep's jobs, and ``evaluate.py ckpt_path=<sweep>`` then
    tested that one run instead of the ensemble of the sweep's jobs, without a word."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    result = run_script(
        "train.py", f"hydra.run.dir={sweep}", "trainer.max_epochs=1", "trainer.limit_train_batches=1", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: hydra.run.dir={sweep} is a sweep folder (multirun.yaml): a run written into it would stand for "
        "the sweep when the folder is given as ckpt_path; give a new folder"
    )
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]
