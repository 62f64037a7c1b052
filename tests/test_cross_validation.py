"""``-m cv=K``: one job per fold, the summary's row per configuration, and the fold models as one ensemble."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_script, write_idx_set
from omegaconf import OmegaConf

from hydra_plugins.mnistlab_sweeps.folds import FoldEnsembles, cv_mistake, fold_overrides
from mnistlab.checkpoint_paths import find_checkpoints
from mnistlab.config_keys import PLACEMENT
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.ensemble import load_ensemble
from mnistlab.evaluation.predictors import CheckpointPredictor, OnnxPredictor
from mnistlab.sweeps.folds import fold_groups, parent_metrics
from mnistlab.sweeps.summary import collect_jobs, distinct_runs, write_summary

TINY = ("data.download=false", "data.verify=false", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_set(tmp_path_factory.mktemp("cv") / "tiny", n_train=90, n_test=30)


@pytest.fixture(scope="module")
def cv_sweep(tiny_root: Path) -> tuple[Path, str]:
    """``python scripts/train.py -m cv=3`` on tiny data, once for this module (~20 s)."""
    sweep = tiny_root.parent / "sweep"
    result = run_script("train.py", "-m", "cv=3", f"data.root={tiny_root}", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep, result.stdout


def _jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def test_one_command_runs_every_fold_and_tests_their_ensemble(cv_sweep: tuple[Path, str]) -> None:
    sweep, stdout = cv_sweep
    jobs = _jobs(sweep)
    # Fold i trains with the sweep's seed + i, written into its overrides: the members differ in initialisation.
    assert [yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text())[-2:] for j in jobs] == [
        ["data.fold=0", "seed=42"],
        ["data.fold=1", "seed=43"],
        ["data.fold=2", "seed=44"],
    ]
    configs = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text()) for j in jobs]
    assert all(c["data"]["folds"] == "${cv}" for c in configs)  # the saved config, as composed
    assert [c["seed"] for c in configs] == [42, 43, 44]
    first_layers = [torch.load(find_checkpoints(j)[0], weights_only=True)["state_dict"] for j in jobs]
    weights = [next(v for k, v in sd.items() if k.endswith("weight")) for sd in first_layers]
    assert not torch.equal(weights[0], weights[1])
    members = (sweep / "ensembles" / "0" / "members.csv").read_text().splitlines()
    assert len(members) == 4 and all(j.name in m for j, m in zip(jobs, members[1:], strict=True))
    ensemble = json.loads((sweep / "ensembles" / "0" / "metrics.json").read_text())
    assert f"ensemble of the folds: test/acc {ensemble['test/acc']:.4f}" in stdout
    assert (sweep / "ensembles" / "0" / "confusion_matrix.png").is_file()
    assert list((sweep / "ensembles" / "0").glob("events.out.tfevents.*"))  # the ensemble's TensorBoard run
    row = next(line for line in stdout.splitlines() if line.startswith("| cv=3 "))
    assert "| 3 | " in row and row.endswith(f" | {ensemble['test/acc']:.4f} |")


def test_a_grid_of_configurations_names_each_ensemble_on_its_line(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "grid"
    result = run_script("train.py", "-m", "cv=2", "model=linear,hidden", f"data.root={tiny_root}", *TINY,
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("ensemble of the folds")]
    # Before: two lines "ensemble of the folds: test/acc ..." that did not say which configuration each was.
    assert len(lines) == 2 and {"model=linear", "model=hidden"} == {
        word for line in lines for word in line.split(":")[0].split() if word.startswith("model=")
    }, lines
    for line in lines:
        report = Path(line.rsplit("(report in ", 1)[1].rstrip(")"))
        overrides = json.loads((report / "ensemble.json").read_text())["overrides"]
        assert line.startswith(f"ensemble of the folds of {' '.join(overrides)}: test/acc ")

    # The folder as one model mixes both configurations: the line names the one the cross-validation table ranks
    # first. Before: "its 2 configurations together, one is e.g. ckpt_path=<sweep>/ensembles/0", the first folder
    # by name whatever its score. Here the configuration of the later jobs validates better (its records are set).
    jobs = sorted(_jobs(sweep), key=lambda job: int(job.name.split("_")[0]))
    later = [job for job in jobs if "model=hidden" in job.name]
    assert len(later) == 2 and jobs[0] not in later  # the grid runs model=linear first
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        metrics["val/acc_best"] = 0.9 + 0.01 * jobs.index(job) if job in later else 0.5
        (job / "metrics.json").write_text(json.dumps(metrics))
    mean = sum(0.9 + 0.01 * jobs.index(job) for job in later) / 2
    folder = sweep / "ensembles" / later[0].name.split("_")[0]
    find_checkpoints(sweep)
    err = capsys.readouterr().err
    assert (
        f"ckpt_path={sweep} is a sweep: an ensemble of its 4 finished jobs (best.ckpt); its 2 configurations together, "
        f"the best by mean val/acc_best is ckpt_path={folder} ({mean:.4f})\n"
    ) in err, err


def test_a_grid_names_its_one_tested_ensemble_where_the_other_configuration_failed(
    tiny_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "grid"
    result = run_script("train.py", "-m", "cv=2", "optimizer.lr=0,0.001", f"data.root={tiny_root}", *TINY,
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # lr=0's folds failed
    lines = [line for line in result.stdout.splitlines() if line.startswith("ensemble of the folds")]
    # Before: "ensemble of the folds: test/acc ..." in a grid of two configurations: which one?
    assert len(lines) == 1 and lines[0].startswith("ensemble of the folds of cv=2 "), lines
    assert "optimizer.lr=0.001" in lines[0].split(":")[0], lines


def test_a_cross_validation_folder_as_ckpt_path_is_one_configuration(
    cv_sweep: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    find_checkpoints(cv_sweep[0])
    err = capsys.readouterr().err
    assert "is a sweep: an ensemble of its 3 finished jobs" in err and "configurations" not in err, err


def _job(sweep: Path, name: str, overrides: list[str], metrics: dict[str, float]) -> None:
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (sweep / name / "metrics.json").write_text(json.dumps(metrics))


def test_summary_row_per_configuration_ranked_by_validation_never_test(tmp_path: Path) -> None:
    for fold in range(3):  # lr=0.1: better on validation, worse on test
        acc = {"val/acc_best": 0.98 + fold * 0.001, "test/acc": 0.95 + fold * 0.002}
        _job(tmp_path, f"{fold}_a", ["cv=3", "optimizer.lr=0.1", f"data.fold={fold}"], acc)
        worse = {"val/acc_best": 0.97, "test/acc": 0.99}
        _job(tmp_path, f"{fold + 3}_b", ["cv=3", "optimizer.lr=0.01", f"data.fold={fold}"], worse)
    (tmp_path / "ensembles" / "0").mkdir(parents=True)
    (tmp_path / "ensembles" / "0" / "ensemble.json").write_text(json.dumps({"overrides": ["cv=3", "optimizer.lr=0.1"]}))
    (tmp_path / "ensembles" / "0" / "metrics.json").write_text(json.dumps({"test/acc": 0.9612}))
    _, markdown = write_summary(tmp_path)
    rows = [line for line in markdown.splitlines() if line.startswith("| cv=3")]
    assert rows == [
        "| cv=3 optimizer.lr=0.1 | 3 | 0.9810 ± 0.0010 | 0.9520 ± 0.0020 | 0.9612 |",
        "| cv=3 optimizer.lr=0.01 | 3 | 0.9700 ± 0.0000 | 0.9900 ± 0.0000 |  |",
    ]
    csv_rows = (tmp_path / "cross_validation.csv").read_text().splitlines()
    assert csv_rows[1] == "cv=3 optimizer.lr=0.1,3,3,0.981000,0.001000,0.952000,0.002000,0.961200"


def test_a_configuration_with_one_finished_fold_shows_no_spread_and_the_folds_it_lacks(tmp_path: Path) -> None:
    # An Optuna trial pruned after its first fold (-m hparams_search=optuna cv=3 hydra.sweeper.n_warmup_steps=0):
    # its other folds never ran, so no job folder says they were due. Before: "| 1 | 0.6117 ± 0.0000 |", one fold
    # read as a whole cross-validation, with a spread of 0 that no single value can have.
    metrics = {"val/acc_best": 0.61, "test/acc": 0.62}
    _job(tmp_path, "0_a", ["cv=3", "optimizer.lr=0.2", "data.fold=0", "seed=42"], metrics)
    _, markdown = write_summary(tmp_path)
    rows = [line for line in markdown.splitlines() if line.startswith("| cv=3")]
    assert rows == ["| cv=3 optimizer.lr=0.2 | 1 of 3 | 0.6100 | 0.6200 |  |"]
    csv_rows = (tmp_path / "cross_validation.csv").read_text().splitlines()
    assert csv_rows[1] == "cv=3 optimizer.lr=0.2,3,1,0.610000,,0.620000,,"
    [group] = fold_groups(collect_jobs(tmp_path, list(PLACEMENT)), tmp_path)
    assert parent_metrics(group) == {"folds/val/acc_best_mean": 0.61, "folds/test/acc_mean": 0.62}


def test_ensemble_probabilities_are_the_mean_of_the_members(cv_sweep: tuple[Path, str], tiny_root: Path) -> None:
    sweep, _ = cv_sweep
    checkpoints = find_checkpoints(sweep)
    assert len(checkpoints) == 3
    images = torch.rand(16, 1, 28, 28)
    ensemble = CheckpointPredictor(sweep, accelerator="cpu")(images)
    members = torch.stack([CheckpointPredictor(c, accelerator="cpu")(images) for c in checkpoints])
    assert torch.allclose(ensemble, members.mean(0), rtol=0, atol=1e-6)
    assert torch.allclose(ensemble.sum(-1), torch.ones(16), atol=1e-6)
    assert torch.equal(CheckpointPredictor([str(c) for c in checkpoints], accelerator="cpu")(images), ensemble)
    # What a server keeps on its device computes what Trainer.predict does, bit for bit; its class is the one
    # evaluate.py counts, the argmax of the ensemble's logits (the log of the mean probabilities).
    predictor = CheckpointPredictor(sweep, accelerator="cpu")
    resident, classes = predictor.resident("cpu")(images)
    assert torch.equal(resident, ensemble)
    assert torch.equal(classes, predictor.classify(images)[1])
    assert torch.equal(classes, predictor.system.net(images).argmax(-1))


def test_the_sweeps_tested_ensemble_folder_is_that_ensemble_where_the_sweep_moves(
    cv_sweep: tuple[Path, str], tmp_path: Path
) -> None:
    sweep, _ = cv_sweep
    moved = Path(shutil.copytree(sweep, tmp_path / "moved"))
    tested = moved / "ensembles" / "0"
    assert find_checkpoints(tested) == [moved / c.relative_to(sweep) for c in find_checkpoints(sweep)]
    images = torch.rand(8, 1, 28, 28)
    by_folder = CheckpointPredictor(tested, accelerator="cpu")(images)
    assert torch.equal(by_folder, CheckpointPredictor(sweep, accelerator="cpu")(images))
    find_checkpoints(tested)[1].unlink()
    with pytest.raises(MnistlabError, match=r"the ensemble's members are gone: .*1_"):
        find_checkpoints(tested)


def test_a_sweep_folder_leaves_out_a_job_that_is_running_or_was_interrupted(
    cv_sweep: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Ctrl-C in job 2 leaves its checkpoints (half-trained) but neither job.json nor metrics.json:
    # it was counted as a finished job and weighed in the ensemble unnoticed.
    sweep = Path(shutil.copytree(cv_sweep[0], tmp_path / "half"))
    jobs = _jobs(sweep)
    for name in ("job.json", "metrics.json"):
        (jobs[2] / name).unlink()
    assert find_checkpoints(sweep) == [find_checkpoints(j)[0] for j in jobs[:2]]
    err = capsys.readouterr().err
    assert "is a sweep: an ensemble of its 2 finished jobs" in err
    assert f"ckpt_path={sweep}: left out job 2, still running or interrupted" in err
    (jobs[2] / "metrics.json").write_text("{}")  # a sweep from before job.json: its finished jobs count
    (jobs[1] / "job.json").unlink()
    assert find_checkpoints(sweep) == [find_checkpoints(j)[0] for j in jobs]
    for job in jobs[1:]:
        (job / "metrics.json").unlink()
    capsys.readouterr()
    assert find_checkpoints(sweep) == [jobs[0] / "checkpoints" / "best.ckpt"]
    assert "an ensemble of its 1 finished job (best.ckpt)" in capsys.readouterr().err  # before: "1 finished jobs"


def test_a_sweep_folder_counts_a_job_run_twice_once(cv_sweep: tuple[Path, str], tmp_path: Path) -> None:
    # A cv=K Optuna trial killed after its fold 0 is asked again: fold 0 runs again, same overrides and seed.
    sweep = Path(shutil.copytree(cv_sweep[0], tmp_path / "retried"))
    jobs = _jobs(sweep)
    again = shutil.copytree(jobs[0], sweep / jobs[0].name.replace("0_", "3_", 1))
    # Before: four members, fold 0's model twice in the mean.
    assert find_checkpoints(sweep) == [find_checkpoints(j)[0] for j in [*jobs[1:], again]]


def test_a_sweep_folder_counts_a_job_run_again_on_other_hardware_once_as_the_summary_does(
    cv_sweep: tuple[Path, str], tmp_path: Path
) -> None:
    # The retried fold 0 ran after the sweep continued with trainer.accelerator=cpu: the same job (Hydra leaves
    # the key out of its folder name, the summary counts it once), but its other overrides.yaml made it a fourth
    # member, fold 0's model twice in the mean.
    sweep = Path(shutil.copytree(cv_sweep[0], tmp_path / "moved"))
    jobs = _jobs(sweep)

    def run_again(number: int, *placement: str) -> Path:
        again = Path(shutil.copytree(jobs[0], sweep / jobs[0].name.replace("0_", f"{number}_", 1)))
        record = again / ".hydra" / "overrides.yaml"
        record.write_text(yaml.safe_dump([*yaml.safe_load(record.read_text()), *placement]))
        return again

    again = run_again(3, "trainer.accelerator=cpu", "trainer.devices=1")
    members = find_checkpoints(sweep)
    assert members == [find_checkpoints(j)[0] for j in [*jobs[1:], again]]
    summary = distinct_runs(collect_jobs(sweep, PLACEMENT))
    assert sorted(job.name for job in summary) == sorted(m.parent.parent.name for m in members)
    # A placement key the sweep sweeps tells its jobs apart, in both.
    shorter = run_again(4, "trainer.limit_train_batches=5")
    assert find_checkpoints(sweep) == [find_checkpoints(j)[0] for j in [*jobs[1:], again, shorter]]
    assert len(distinct_runs(collect_jobs(sweep, PLACEMENT))) == 4


@pytest.mark.parametrize("stage", ["ensembles", "summary"])
def test_a_ctrl_c_after_the_jobs_prints_the_continue_line_not_a_traceback(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The ensembles' test runs after the sweeper's own Ctrl-C handling ended: a KeyboardInterrupt traceback.
    import hydra_plugins.mnistlab_sweeps.callbacks as sweep_callbacks
    import mnistlab.sweeps.folds

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    config = OmegaConf.create(
        {
            "cv": 3,
            "trainer": {"accelerator": "cpu"},
            "hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"config": {"override_dirname": {"exclude_keys": []}}}},
        }
    )
    if stage == "ensembles":
        monkeypatch.setattr(mnistlab.sweeps.folds, "evaluate_ensembles", interrupted)
        callback = FoldEnsembles()
    else:
        monkeypatch.setattr(sweep_callbacks, "write_summary", interrupted)
        callback = sweep_callbacks.SweepSummary()
    monkeypatch.setattr("sys.__stderr__", sys.stderr)  # where the hint goes (the console, past a job's log)
    try:
        callback.on_multirun_end(config=config)
    except KeyboardInterrupt:
        pytest.fail("a bare KeyboardInterrupt (a traceback on the console)")
    except SystemExit as e:
        assert e.code == 130
    else:
        pytest.fail("the sweep went on after a Ctrl-C")
    assert capsys.readouterr().err.strip() == (
        f"interrupted; continue with the same command plus hydra.sweep.dir={tmp_path} "
        "(finished jobs are kept, interrupted ones resume from their last checkpoint)"
    )


def test_ensemble_exports_as_one_onnx_graph(cv_sweep: tuple[Path, str], tiny_root: Path, tmp_path: Path) -> None:
    sweep, _ = cv_sweep
    args = (f"ckpt_path={sweep}", f"data.root={tiny_root}", "data.verify=false", f"output_dir={tmp_path}")
    result = run_script("export.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    diff = float(result.stdout.split("= ")[-1])
    assert diff <= 1e-5 and "an ensemble of its 3 finished jobs" in result.stderr
    images = torch.rand(8, 1, 28, 28)
    onnx = OnnxPredictor(tmp_path / "model.onnx")(images)
    assert np.allclose(onnx, CheckpointPredictor(sweep, accelerator="cpu")(images), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_serves_an_ensemble(cv_sweep: tuple[Path, str], mnist_dir: Path, tmp_path: Path) -> None:
    from PIL import Image
    from test_serve import multipart, request, running_server

    from mnistlab.data.files import load_split
    from mnistlab.data.specs import MNIST

    sweep, _ = cv_sweep
    images, _ = load_split(mnist_dir, MNIST, train=False)
    Image.fromarray(images[998].numpy()).save(tmp_path / "digit.png")
    by_predict = run_script("predict.py", f"ckpt_path={sweep}", f"image={tmp_path / 'digit.png'}", "format=json")
    assert by_predict.returncode == 0, by_predict.stderr[-3000:]
    with running_server(sweep, tmp_path / "serve.log") as url:
        status, body = request(f"{url}/predict", *multipart((tmp_path / "digit.png").read_bytes()))
    assert status == 200, body
    expected = json.loads(by_predict.stdout)[0]["probabilities"]
    assert np.allclose(json.loads(body)["probabilities"], expected, rtol=0, atol=1e-5)


def _altered(checkpoint: Path, folder: Path, **changes: dict) -> Path:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for section, values in changes.items():
        ckpt[section].update(values)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "best.ckpt")
    return folder / "best.ckpt"


def test_members_that_disagree_are_refused_in_one_line(cv_sweep: tuple[Path, str], tmp_path: Path) -> None:
    first = find_checkpoints(_jobs(cv_sweep[0])[0])[0]
    names = [f"c{i}" for i in range(10)]
    other_classes = _altered(first, tmp_path / "classes", hyper_parameters={"class_names": names})
    with pytest.raises(MnistlabError, match=r"^ensemble members disagree on their classes: .*classes/best.ckpt has"):
        load_ensemble([first, other_classes])
    other_data = _altered(first, tmp_path / "data", datamodule_hyper_parameters={"dataset": "fashion_mnist"})
    with pytest.raises(MnistlabError, match=r"^ensemble members disagree on their input: .*data.dataset=fashion_mnist"):
        load_ensemble([first, other_data])
    # The same member twice (a file and its run folder) would weigh twice in the mean.
    with pytest.raises(MnistlabError, match=r"^ckpt_path names one checkpoint twice, as .*best.ckpt and as .*"):
        find_checkpoints([first, first.parent.parent])


@pytest.mark.parametrize(
    ("cv", "arguments", "message"),
    [
        (1, [], "cv=1 is out of range: must be an integer >= 2 (the number of folds)"),
        (60_001, [], "cv=60001 is more than the 60000 training images: a fold needs at least one"),
        (60_000, [], None),
        ("5", [], "cv='5' is not an integer: must be an integer >= 2 (the number of folds)"),
        (None, ["cv=2,3"], "cv takes one number of folds per sweep (e.g. cv=5), not a list; run one sweep per K"),
        (3, ["data.fold=1"], "cv=3 runs every fold itself: drop data.fold=1"),
        (3, ["data.folds=4"], "cv=3 runs every fold itself: drop data.folds=4"),
        (3, ["data.val_size=5000"], "cv=3 validates each job on its fold: drop data.val_size=5000"),
        (3, ["data.val_size=0"], None),
        (3, ["seed=1,2"], "cv=3 gives fold i the seed S+i: set one seed S (e.g. seed=7), not a list"),
        ("abc", ["seed=1,2"], "cv='abc' is not an integer: must be an integer >= 2 (the number of folds)"),
        (1, ["seed=1,2"], "cv=1 is out of range: must be an integer >= 2 (the number of folds)"),
        (3, ["seed=7"], None),
        (None, ["seed=1,2"], None),
        (3, ["model=linear,hidden"], None),
    ],
)
def test_the_sweepers_check_cv_before_any_job(cv: object, arguments: list[str], message: str | None) -> None:
    assert cv_mistake(cv, arguments) == message


@pytest.mark.parametrize(
    ("searched", "message"),
    [
        (["seed"], "cv=3 sets data.fold and seed per fold: take seed out of hydra.sweeper.params"),
        (
            ["optimizer.lr", "data.fold", "data.val_size"],
            "cv=3 sets data.fold and seed per fold: take data.fold, data.val_size out of hydra.sweeper.params",
        ),
        (["optimizer.lr", "model.hidden_units"], None),
    ],
)
def test_a_search_over_what_cv_sets_per_fold_is_refused(searched: list[str], message: str | None) -> None:
    # Each fold job replaces the trial's own seed: a searched seed would be dropped without a word.
    assert cv_mistake(3, [], searched) == message
    assert cv_mistake(None, [], searched) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cv=3",), "error: cv=3 runs one job per fold: add -m (python scripts/train.py -m ... cv=3)"),
        (("-m", "cv=1"), "error: cv=1 is out of range: must be an integer >= 2 (the number of folds)"),
        # Refused before Hydra composes the 70,000 jobs' configs (minutes), not by the first job.
        (("-m", "cv=70000"), "error: cv=70000 is more than the 60000 training images: a fold needs at least one"),
    ],
)
def test_refused_commands_are_one_line(args: tuple[str, ...], message: str, tiny_root: Path, tmp_path: Path) -> None:
    where = ("hydra.sweep.dir" if "-m" in args else "hydra.run.dir") + f"={tmp_path / 'out'}"
    result = run_script("train.py", *args, f"data.root={tiny_root}", *TINY, where)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # refused before any work: no run or sweep folder


def test_a_seed_list_in_the_grid_sweepers_params_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    # A sweep written in a config file (hydra.sweeper.params) rather than on the command line.
    presets = tmp_path / "conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "seeds.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      seed: 1,2\n")
    search = (f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=seeds")
    result = run_script(
        "train.py", "-m", "cv=3", *search, f"data.root={tiny_root}", *TINY, f"hydra.sweep.dir={tmp_path / 'out'}"
    )
    message = "error: cv=3 gives fold i the seed S+i: set one seed S (e.g. seed=7), not a list"
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == message, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_joblib_jobs_write_into_the_default_sweep_folder(tiny_root: Path, tmp_path: Path) -> None:
    # No hydra.sweep.dir: each joblib worker resolved ${mnistlab.new_folder:multirun} again, at its own start, and
    # claimed a folder of its own (multirun/<date>/<later time>, then <time>_2); the sweep's summary found 0 jobs
    # in the folder it had made, and no ensemble was tested.
    parallel = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    result = run_script("train.py", "-m", "cv=2", f"data.root={tiny_root}", *TINY, *parallel, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [sweep] = [p for p in (tmp_path / "multirun").glob("*/*") if p.is_dir()]
    assert len(_jobs(sweep)) == 2 and (sweep / "ensembles" / "0" / "metrics.json").is_file()
    assert "# Sweep summary: 2 jobs, 2 finished, 0 failed" in result.stdout


@pytest.mark.slow
def test_a_joblib_search_leaves_no_empty_sweep_folders(tiny_root: Path, tmp_path: Path) -> None:
    # Before: conf/hparams_search/optuna.yaml set hydra.sweeper.storage again over the sweeper's own default, and
    # Hydra's merge resolved that interpolation, hence hydra.sweep.dir's ${mnistlab.new_folder:multirun}, in each
    # joblib worker's composition: an empty multirun/<date>/<time> (and <time>_2) per worker beside the sweep.
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2")
    parallel = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    result = run_script("train.py", "-m", "cv=2", *search, *parallel, f"data.root={tiny_root}", *TINY, cwd=tmp_path)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr[-3000:]
    [sweep] = [p for p in (tmp_path / "multirun").glob("*/*") if p.is_dir()]
    assert len(_jobs(sweep)) == 4 and (sweep / "optuna.db").is_file()


@pytest.mark.slow
def test_a_search_with_more_joblib_workers_than_trials_at_a_time_says_so(tiny_root: Path, tmp_path: Path) -> None:
    # Before: no word, and each launch ran one job (one fold of one trial) while the other worker sat idle.
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    result = run_script("train.py", "-m", "cv=2", *search, f"data.root={tiny_root}", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = (
        "warning: hydra.launcher.n_jobs=2 joblib workers, but the search launches hydra.sweeper.n_jobs=1 trial at a "
        "time, so only 1 of them works: set hydra.sweeper.n_jobs=2 too"
    )
    assert line in result.stderr.splitlines(), result.stderr[-3000:]


@pytest.mark.slow
def test_joblib_folds_with_mlflow_nest_under_one_parent_run(tiny_root: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    parallel = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=mlflow", f"paths.mlflow_dir={tmp_path}")
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py", "-m", "cv=2", f"data.root={tiny_root}", *TINY, *parallel, f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The ensemble is tested in the sweep's process, which the joblib workers' jobs never configured.
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == str(sweep)]
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.info.run_name.startswith("cv ")]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    ensemble = json.loads((sweep / "ensembles" / "0" / "metrics.json").read_text())
    assert parent.data.metrics["ensemble/test/acc"] == pytest.approx(ensemble["test/acc"])
    assert {"folds/val/acc_best_mean", "folds/test/acc_std"} <= set(parent.data.metrics)
    # The settings the folds share, as the ensemble's HParams record has them (before: no params, so MLflow's table
    # and its compare view could not tell a grid's configurations apart).
    assert parent.data.params["cv"] == "2" and parent.data.params["model"] == children[0].data.params["model"]
    assert "data.fold" not in parent.data.params and "seed" not in parent.data.params
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"members.csv", "confusion_matrix.png"}


@pytest.mark.slow
def test_optuna_trial_is_the_mean_over_its_folds_and_is_pruned_between_folds(tiny_root: Path, tmp_path: Path) -> None:
    import optuna

    sweep = tmp_path / "search"
    search = ("hparams_search=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_startup_trials=1")
    result = run_script(
        "train.py", "-m", "cv=2", *search, "hydra.sweeper.n_warmup_steps=0", f"data.root={tiny_root}", *TINY,
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    jobs = {int(j.name.split("_")[0]): json.loads((j / "metrics.json").read_text()) for j in _jobs(sweep)}
    assert len(study.trials) == 4 and study.trials[0].state == optuna.trial.TrialState.COMPLETE
    for trial in study.trials:  # one trial per round: trial t is jobs 2t (fold 0) and 2t+1 (fold 1)
        folds = [jobs[j]["val/acc_best"] for j in (2 * trial.number, 2 * trial.number + 1) if j in jobs]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(folds) == 2 and trial.value == pytest.approx(sum(folds) / 2)
        else:  # pruned on its running mean after the first fold: the second never ran
            assert trial.state == optuna.trial.TrialState.PRUNED and len(folds) == 1
            assert trial.intermediate_values == {0: pytest.approx(folds[0])}


def test_fold_seeds_follow_the_command_seed_and_refuse_null() -> None:
    assert fold_overrides(OmegaConf.create({"cv": 2, "seed": 7}), []) == [
        ["data.fold=0", "seed=7"],
        ["data.fold=1", "seed=8"],
    ]
    with pytest.raises(SystemExit):  # seed=null: Lightning would seed every fold with 0 (before: no seed= per fold)
        fold_overrides(OmegaConf.create({"cv": 2, "seed": None}), [])
    assert fold_overrides(OmegaConf.create({"cv": None, "seed": 7}), []) == []
    # A grid sweeper's hydra.sweeper.params come before the command's overrides, and the sweep's own
    # config does not hold them: the last seed=S of either is S.
    config = OmegaConf.create({"cv": 2, "seed": 42})
    assert fold_overrides(config, ["seed=7", "model=linear"]) == [["data.fold=0", "seed=7"], ["data.fold=1", "seed=8"]]
    with pytest.raises(SystemExit):
        fold_overrides(config, ["seed=7", "seed=null"])


def test_folds_swept_by_hand_with_seeds_are_one_row_per_seed(tmp_path: Path) -> None:
    # -m data.folds=2 data.fold=0,1 data.val_size=0 seed=1,2: no cv=K gave these seeds, the command did.
    for number, (seed, fold) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        acc = {"val/acc_best": 0.9 + number / 100, "test/acc": 0.9}
        _job(tmp_path, f"{number}_x", ["data.folds=2", "data.val_size=0", f"data.fold={fold}", f"seed={seed}"], acc)
    _, markdown = write_summary(tmp_path)
    rows = [line for line in markdown.splitlines() if line.startswith("| data.folds=2")]
    assert rows == [  # before: one row of "2" folds, seed 1's two jobs silently left out
        "| data.folds=2 data.val_size=0 seed=2 | 2 | 0.9250 ± 0.0071 | 0.9000 ± 0.0000 |  |",
        "| data.folds=2 data.val_size=0 seed=1 | 2 | 0.9050 ± 0.0071 | 0.9000 ± 0.0000 |  |",
    ]
    # cv=K from a config file (no cv= override): the folds' seeds S+i stay one configuration.
    for number in range(4):
        shutil.rmtree(next(tmp_path.glob(f"{number}_x")))
    for fold in range(2):
        overrides = ["experiment=mine", f"data.fold={fold}", f"seed={42 + fold}"]
        _job(tmp_path, f"{fold}_y", overrides, {"val/acc_best": 0.9})
    _, markdown = write_summary(tmp_path)
    rows = [line for line in markdown.splitlines() if line.startswith("| experiment")]
    assert rows == ["| experiment=mine | 2 | 0.9000 ± 0.0000 |  |  |"]


def test_folds_without_checkpoints_warn_in_one_line(tiny_root: Path, tmp_path: Path) -> None:
    """``-m cv=2 trainer.fast_dev_run=true``: smoke tests save no checkpoint, so there is no ensemble to test.
    Before: the warning came with a traceback on the console, and its line twice."""
    sweep = tmp_path / "smoke"
    result = run_script("train.py", "-m", "cv=2", "trainer.fast_dev_run=true", f"data.root={tiny_root}", *TINY,
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "Traceback" not in console, console[-3000:]
    warnings = [line for line in console.splitlines() if "the fold ensemble could not be tested" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), warnings
