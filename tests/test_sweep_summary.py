"""The sweep summary's plain functions, on job folders written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnistlab.sweeps import collect_jobs, seed_groups, write_summary
from mnistlab.sweeps.gpus import claim_slot, release_slots
from mnistlab.sweeps.summary import configuration_values


def job(sweep: Path, name: str, overrides: list[str], acc: float | None, status: str | None = None) -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if acc is not None:
        metrics = {"test/acc": acc, "test/loss": 1 - acc, "val/acc_best": acc, "epochs": 1}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if status:
        (folder / "job.json").write_text(json.dumps({"status": status, "error": "boom", "seconds": 1.0}))


def test_summary_ranks_marks_groups_and_reports_failures(tmp_path: Path) -> None:
    job(tmp_path, "0_a", ["model=linear", "seed=1", "data.root=/x"], 0.90)
    job(tmp_path, "1_b", ["model=linear", "seed=2", "data.root=/x"], 0.80)
    job(tmp_path, "2_c", ["model=hidden", "seed=1", "data.root=/x"], 0.95)
    job(tmp_path, "3_d", ["model=hidden", "seed=2", "data.root=/x"], None, status="failed")
    job(tmp_path, "4_e", ["model=hidden", "seed=3", "data.root=/x"], None)  # died without a word
    jobs, markdown = write_summary(tmp_path, exclude_keys=["data.root"])
    assert [j.name for j in jobs] == ["2_c", "0_a", "1_b", "3_d", "4_e"]
    assert [j.status for j in jobs] == ["ok", "ok", "ok", "failed", "failed"]
    assert jobs[0].overrides == ["model=hidden", "seed=1"]  # excluded keys are not shown
    assert "| **best** | 2_c |" in markdown and markdown.count("**best**") == 1
    assert "2 failed" in markdown.splitlines()[0]
    groups = seed_groups(jobs)
    assert len(groups) == 1  # model=hidden has one finished seed only
    overrides, n, stats = groups[0]
    assert (overrides, n) == (["model=linear"], 2)
    assert stats["test/acc"] == pytest.approx((0.85, 0.0707107), abs=1e-6)
    assert "| model=linear | 2 | 0.8500 ± 0.0707 |" in markdown
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("job,overrides,test/acc") and len(csv_lines) == 6
    assert collect_jobs(tmp_path / "nothing") == []


def test_gpu_slots_are_exclusive_until_their_process_lets_go(tmp_path: Path) -> None:
    # flock locks conflict between open files even within one process, as between joblib workers;
    # emptying the module's record of held slots plays a second and a third worker process.
    from mnistlab.sweeps import gpus

    assert claim_slot(tmp_path, 2) == 0
    assert claim_slot(tmp_path, 2) == 0  # a process keeps its slot
    worker0 = dict(gpus._held)
    gpus._held.clear()
    assert claim_slot(tmp_path, 2) == 1
    worker1 = dict(gpus._held)
    gpus._held.clear()
    assert claim_slot(tmp_path, 2) is None  # both GPUs taken
    gpus._held.update(worker0)
    release_slots()  # worker 0 ends
    assert claim_slot(tmp_path, 2) == 0
    release_slots()
    gpus._held.update(worker1)
    release_slots()


def _dot_centres(chart, colour: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(x, y) centres of the chart's dots of ``colour`` (9-pixel discs, far apart)."""
    import numpy as np

    clusters: list[list[np.ndarray]] = []
    for point in np.argwhere((np.asarray(chart) == colour).all(-1)):  # (y, x) pixels of that colour
        near = next((c for c in clusters if abs(c[0] - point).max() <= 8), None)
        near.append(point) if near is not None else clusters.append([point])
    return [(round(float(np.mean([p[1] for p in c]))), round(float(np.mean([p[0] for p in c])))) for c in clusters]


def test_summary_png_draws_each_job_where_its_accuracy_is(tmp_path: Path) -> None:
    """One row per configuration (seeds together), best mean first; each dot's x follows its job's val/acc_best."""
    from PIL import Image

    from mnistlab.figures import BLUES, STRIP_ROW

    job(tmp_path, "0_a", ["model=linear", "seed=1"], 0.90)
    job(tmp_path, "1_b", ["model=linear", "seed=2"], 0.92)
    job(tmp_path, "2_c", ["model=hidden", "seed=1"], 0.97)
    job(tmp_path, "3_d", ["model=hidden", "seed=2"], None, status="failed")  # no dot
    write_summary(tmp_path)
    chart = Image.open(tmp_path / "summary.png").convert("RGB")
    dots = sorted(_dot_centres(chart, tuple(int(c) for c in BLUES[6])), key=lambda d: d[0])
    assert len(dots) == 3
    (x90, y90), (x92, y92), (x97, y97) = dots
    assert y90 == y92 and y97 == y90 - STRIP_ROW  # model=hidden (mean 0.97) is the first row, model=linear below
    assert (x92 - x90) * 5 == pytest.approx((x97 - x92) * 2, abs=6)  # the axis is linear: 0.02 against 0.05


def test_summary_png_rows_leave_what_every_job_shares_to_the_title(tmp_path: Path) -> None:
    from mnistlab.sweeps.summary import configuration_values

    job(tmp_path, "0_a", ["model=linear", "seed=1", "trainer.max_epochs=1"], 0.90)
    job(tmp_path, "1_b", ["model=linear", "seed=2", "trainer.max_epochs=1"], 0.92)
    job(tmp_path, "2_c", ["model=hidden", "seed=1", "trainer.max_epochs=1"], 0.97)
    rows, shared = configuration_values(collect_jobs(tmp_path), "val/acc_best")
    assert rows == [("model=hidden", [0.97]), ("model=linear", [0.92, 0.90])] and shared == ["trainer.max_epochs=1"]
    one = tmp_path / "one"
    job(one, "0_a", ["model=linear", "seed=1"], 0.90)
    job(one, "1_b", ["model=linear", "seed=2"], 0.92)
    assert configuration_values(collect_jobs(one), "val/acc_best") == ([("model=linear", [0.92, 0.90])], [])


def test_summary_png_needs_two_finished_jobs(tmp_path: Path) -> None:
    job(tmp_path, "0_a", ["model=linear"], 0.90)
    job(tmp_path, "1_b", ["model=hidden"], None, status="failed")
    write_summary(tmp_path)
    assert (tmp_path / "summary.md").is_file() and not (tmp_path / "summary.png").exists()
    none = tmp_path / "none"  # before: "these runs have no validation set", of jobs that all failed
    job(none, "0_a", ["model=linear"], None, status="failed")
    assert (
        write_summary(none)[1].splitlines()[2] == "Not ranked: no job recorded val/acc_best, val/loss_best, test/acc."
    )


def test_runs_kept_by_the_lowest_val_loss_rank_lowest_first(tmp_path: Path) -> None:
    """Before: ``fit_and_test`` recorded a val/loss checkpoint's score as ``val/acc_best``, and the summary put
    the run with the highest loss first."""
    for name, loss in (("0_a", 0.30), ("1_b", 0.10), ("2_c", 0.20)):
        job(tmp_path, name, [f"model={name[2]}", "seed=1"], 0.9)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        del metrics["val/acc_best"]
        (tmp_path / name / "metrics.json").write_text(json.dumps({**metrics, "val/loss_best": loss}))
    jobs, markdown = write_summary(tmp_path)
    assert [j.name for j in jobs] == ["1_b", "2_c", "0_a"]
    assert "Ranked by the lowest validation loss (val/loss_best); test/acc is only reported." in markdown
    assert "| **best** | 1_b | model=b seed=1 | 0.9000 | 0.1000 |   | 0.1000 | 1 |" in markdown
    header = (tmp_path / "summary.csv").read_text().splitlines()[0]
    assert header == "job,overrides,test/acc,test/loss,val/acc_best,val/loss_best,epochs,seconds,status,error"


def test_a_fold_run_twice_with_its_seed_is_no_second_seed(tmp_path: Path) -> None:
    # A cv=2 Optuna trial killed in fold 1 and asked again: fold 0 (seed 42) ran and finished twice.
    trial = ["cv=2", "optimizer.lr=0.01"]
    job(tmp_path, "0_a", [*trial, "data.fold=0", "seed=42"], 0.90, status="ok")
    job(tmp_path, "1_a", [*trial, "data.fold=1", "seed=43"], None, status="retried")
    job(tmp_path, "2_a", [*trial, "data.fold=0", "seed=42"], 0.90, status="ok")
    job(tmp_path, "3_a", [*trial, "data.fold=1", "seed=43"], 0.80, status="ok")
    jobs, markdown = write_summary(tmp_path)
    assert seed_groups(jobs) == []  # before: one configuration "over 2 seeds", 42 twice, std 0
    assert "Mean ± std over seeds" not in markdown
    rows, _ = configuration_values(jobs, "val/acc_best")
    assert [sorted(values) for _, values in rows] == [[0.80, 0.90]]  # each fold once: the chart's mean is 0.85


def test_a_swept_placement_key_tells_the_jobs_apart(tmp_path: Path) -> None:
    # -m trainer.limit_train_batches=5,50 seed=1,2: Hydra's folder names leave the key out, as every placement key.
    exclude = ["data.root", "trainer.limit_train_batches", "trainer.accelerator", "resume"]
    for number, (batches, seed) in enumerate([(5, 1), (5, 2), (50, 1), (50, 2)]):
        where = ["data.root=/x", f"trainer.accelerator={'cpu' if number < 2 else 'gpu'}"]  # continued on a GPU
        resumed = ["resume='/s/2_seed=1'"] if number == 2 else []
        job(
            tmp_path,
            f"{number}_seed={seed}",
            [f"trainer.limit_train_batches={batches}", f"seed={seed}", *where, *resumed],
            0.8 + number / 100,
        )
    jobs, _ = write_summary(tmp_path, exclude)
    assert sorted(" ".join(j.overrides) for j in jobs) == [  # before: "seed=1" twice and "seed=2" twice
        "trainer.limit_train_batches=5 seed=1",
        "trainer.limit_train_batches=5 seed=2",
        "trainer.limit_train_batches=50 seed=1",
        "trainer.limit_train_batches=50 seed=2",
    ]
    assert [(overrides, n) for overrides, n, _ in seed_groups(jobs)] == [
        (["trainer.limit_train_batches=50"], 2),
        (["trainer.limit_train_batches=5"], 2),
    ]
    rows, _ = configuration_values(jobs, "val/acc_best")
    assert [label for label, _ in rows] == ["trainer.limit_train_batches=50", "trainer.limit_train_batches=5"]


def test_a_sweep_without_results_does_not_claim_a_ranking(tmp_path: Path) -> None:
    # -m trainer.fast_dev_run=true model=linear,hidden: each job ok, none writes metrics.json.
    job(tmp_path, "0_a", ["model=linear", "trainer.fast_dev_run=True"], None, status="ok")
    job(tmp_path, "1_b", ["model=hidden", "trainer.fast_dev_run=True"], None, status="ok")
    _, markdown = write_summary(tmp_path)
    assert (
        markdown.splitlines()[2] == "Not ranked: no job recorded val/acc_best, val/loss_best, test/acc."
    )  # before: "Ranked by
    assert "no validation set" not in markdown  # test/acc: these runs have no validation set (data.val_size=0)."
    assert "**best**" not in markdown


def test_a_study_without_a_completed_trial_says_so(tmp_path: Path) -> None:
    # -m hparams_search=optuna hydra.sweeper.objective=val/acc: no metrics.json holds it, every trial failed.
    job(tmp_path, "0_a", ["optimizer.lr=0.01"], 0.9, status="ok")
    study = {"study_name": "mnistlab", "objective": "val/acc", "states": {"FAIL": 1}}
    (tmp_path / "optuna.json").write_text(json.dumps(study))
    _, markdown = write_summary(tmp_path)
    # Before: no word of the study, whose jobs all read "ok".
    assert "## Optuna study `mnistlab`" in markdown
    assert "Trials: 1 fail." in markdown and "No trial completed: no best trial by val/acc" in markdown


def test_summary_png_title_says_every_job_only_of_what_failed_jobs_share_too(tmp_path: Path) -> None:
    # -m model=linear,hidden optimizer.lr=0,0.1: lr=0's jobs failed; lr=0.1 is not every job's.
    job(tmp_path, "0_a", ["model=linear", "optimizer.lr=0", "trainer.max_epochs=1"], None, status="failed")
    job(tmp_path, "1_b", ["model=linear", "optimizer.lr=0.1", "trainer.max_epochs=1"], 0.90)
    job(tmp_path, "2_c", ["model=hidden", "optimizer.lr=0", "trainer.max_epochs=1"], None, status="failed")
    job(tmp_path, "3_d", ["model=hidden", "optimizer.lr=0.1", "trainer.max_epochs=1"], 0.95)
    rows, shared = configuration_values(collect_jobs(tmp_path), "val/acc_best")
    assert shared == ["trainer.max_epochs=1"]  # before: also optimizer.lr=0.1, under "every job:"
    assert [label for label, _ in rows] == ["model=hidden optimizer.lr=0.1", "model=linear optimizer.lr=0.1"]
