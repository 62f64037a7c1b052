"""An ensemble's members: each one's own test accuracy, and the folds a sweep folder's ensemble lacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from mnistlab.checkpoint_paths import find_checkpoints
from mnistlab.config_keys import shell_path_override
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.ensemble import Ensemble
from mnistlab.evaluation.evaluate import member_accuracies
from mnistlab.evaluation.predictors import ProbabilityNet, load_predictor
from mnistlab.resume.checkpoint import continue_from
from mnistlab.systems import Classifier


def _constant_logits(logits: list[float]) -> nn.Module:
    """A real linear network that answers the same logits for any image."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, len(logits)))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor(logits))
    return net


def test_a_saturated_sigmoid_member_is_scored_as_its_own_test_scores_it() -> None:
    # A sigmoid head trained at a high learning rate: logits 30 and 40 both give sigmoid 1.0 in float32,
    # a tie its probabilities break towards class 0, whereas the run's own test (the logits' argmax) says 1.
    # Before: evaluate.py printed "member 0: test/acc 0.0000" for a run whose metrics.json said 1.0
    # (on MNIST: 0.4327 against the run's 0.2945).
    saturated = _constant_logits([30.0, 40.0, -5.0])
    plain = _constant_logits([0.0, 1.0, 5.0])
    members = [ProbabilityNet(saturated, "sigmoid"), ProbabilityNet(plain, "softmax")]
    system = Classifier(Ensemble(members), class_names=["a", "b", "c"], head="softmax")
    images, labels = torch.rand(4, 1, 28, 28), torch.ones(4, dtype=torch.long)
    own_tests = [float((net(images).argmax(-1) == labels).float().mean()) for net in (saturated, plain)]
    assert own_tests == [1.0, 0.0]
    assert member_accuracies(system, SimpleNamespace(test_set=(images, labels))) == own_tests


def _fold_job(sweep: Path, number: int, lr: str, fold: int, status: str) -> None:
    job = sweep / f"{number}_cv=2,data.fold={fold},optimizer.lr={lr},seed={42 + fold}"
    (job / ".hydra").mkdir(parents=True)
    overrides = ["cv=2", f"optimizer.lr={lr}", f"data.fold={fold}", f"seed={42 + fold}"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "best.ckpt").write_bytes(b"")  # which files count is all that is read here
    (job / "job.json").write_text(json.dumps({"status": status}))


def test_a_sweep_folder_short_of_a_fold_names_the_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # -m cv=2 optimizer.lr=0.1,0.01 where lr=0.01's fold 1 failed (or is still to run: the sweep is running).
    # Before: "is a sweep: an ensemble of its 3 finished jobs (best.ckpt)", and no word that one configuration's
    # cross-validation is one fold short (a failed job is left out without a line).
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    for number, lr, fold, status in [(0, "0.1", 0, "ok"), (1, "0.1", 1, "ok"), (2, "0.01", 0, "ok")]:
        _fold_job(sweep, number, lr, fold, status)
    assert len(find_checkpoints(sweep)) == 3
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        f"ckpt_path={sweep}: its finished jobs lack fold 1 of cv=2 optimizer.lr=0.01 "
        "(failed, pruned, interrupted or still to run)"
    ), err
    _fold_job(sweep, 3, "0.01", 1, "failed")
    find_checkpoints(sweep)
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"ckpt_path={sweep}: its finished jobs lack fold 1 ")
    (sweep / "3_cv=2,data.fold=1,optimizer.lr=0.01,seed=43" / "job.json").write_text(json.dumps({"status": "ok"}))
    find_checkpoints(sweep)
    assert "lack" not in capsys.readouterr().err


def test_a_sweep_folder_whose_only_job_is_unfinished_says_so_in_its_error(tmp_path: Path) -> None:
    # A cv=3 sweep stopped (or still running) in its first fold: job 0 has a last.ckpt but no job.json.
    # Before: "... is a folder without best.ckpt or last.ckpt (in it or in checkpoints/) and without finished
    # sweep jobs", and no word of job 0, whose checkpoints are right there.
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    _fold_job(sweep, 0, "0.1", 0, "ok")
    job = sweep / "0_cv=2,data.fold=0,optimizer.lr=0.1,seed=42"
    (job / "job.json").unlink()
    with pytest.raises(MnistlabError) as caught:
        find_checkpoints(sweep)
    assert str(caught.value) == (
        f"ckpt_path={sweep} is a sweep folder without finished jobs: job 0 is still running or was interrupted "
        f"(the sweep's own command plus hydra.sweep.dir={sweep} finishes it)"
    )


def _devices_job(sweep: Path, number: int, devices: int) -> None:
    job = sweep / f"{number}_trainer.accelerator=cpu,trainer.devices={devices}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["trainer.accelerator=cpu", f"trainer.devices={devices}"])
    )
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "best.ckpt").write_bytes(b"")  # which files count is all that is read here
    (job / "job.json").write_text(json.dumps({"status": "ok"}))


@pytest.mark.parametrize(("exclude_keys", "members"), [("${mnistlab.placement_keys:}", 1), ("[]", 2)])
def test_a_sweeps_members_are_told_apart_by_its_own_exclude_keys(
    tmp_path: Path, exclude_keys: str, members: int
) -> None:
    # -m trainer.accelerator=cpu trainer.devices=1,2 'hydra.job.config.override_dirname.exclude_keys=[]': two jobs,
    # two rows of its summary. Before: "an ensemble of its 1 finished jobs", job 1 alone, as if job 0 were the same
    # job run again on other hardware (the project's exclude_keys, the default's, hide the hardware).
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    record = f"hydra:\n  job:\n    config:\n      override_dirname:\n        exclude_keys: {exclude_keys}\n"
    (sweep / "multirun.yaml").write_text(record)
    for number, devices in [(0, 1), (1, 2)]:
        _devices_job(sweep, number, devices)
    found = find_checkpoints(sweep)
    assert [f.parents[1].name.split("_")[0] for f in found] == ["0", "1"][-members:]


def test_a_list_with_an_onnx_model_is_refused_in_one_line_that_says_why(tmp_path: Path) -> None:
    # Before: "<path>/model.onnx: not a readable checkpoint (no file of torch.save); ... predict.py and serve.py
    # also take an ONNX model written by export.py (model.onnx)": predict.py was given one, and read it was fine.
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    with pytest.raises(MnistlabError) as caught:
        load_predictor([str(tmp_path / "run"), str(onnx)], accelerator="cpu")
    assert str(caught.value) == (
        f"ckpt_path lists an ONNX model, {onnx}: a list is one ensemble of training checkpoints (.ckpt) or run "
        f"folders; give the ONNX model alone (ckpt_path={onnx}), or export the list's ensemble as one model.onnx "
        "(python scripts/export.py ckpt_path=[...] format=onnx output_dir=...)"
    )
    with pytest.raises(MnistlabError) as alone:  # one ONNX model listed alone is that model, as serve.py reads it
        load_predictor([str(onnx)], accelerator="cpu")
    assert "lists an ONNX model" not in str(alone.value) and str(onnx) in str(alone.value), alone.value
    with pytest.raises(MnistlabError) as from_hydra:  # ckpt_path=[model.onnx] as predict.py passes it: a ListConfig
        load_predictor(OmegaConf.create({"ckpt_path": [str(onnx)]}).ckpt_path, accelerator="cpu")
    assert str(from_hydra.value) == str(alone.value)


def test_a_run_named_twice_is_refused_naming_both_spellings(tmp_path: Path) -> None:
    # ckpt_path=[<run>/checkpoints/last.ckpt,<run>], where the folder stands for best.ckpt. Before: evaluate.py
    # tested "ensemble of 2 members", member 0 last.ckpt and member 1 best.ckpt, one run weighing twice.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")  # which files there are is all that is read here
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    with pytest.raises(MnistlabError) as refused:
        find_checkpoints([str(last), str(run)])
    assert str(refused.value) == (
        f"ckpt_path names the run {run} twice, as {last} and as {run} ({best}): "
        "a run counts once in an ensemble; give it once"
    )
    with pytest.raises(MnistlabError) as refused:
        find_checkpoints([str(run), str(best)])
    assert str(refused.value) == (
        f"ckpt_path names one checkpoint twice, as {run} ({best}) and as {best}: "
        "each member of an ensemble counts once; give it once"
    )
    with pytest.raises(MnistlabError, match=r"^system.teacher names .*/run twice: each member of an ensemble"):
        find_checkpoints([str(run), str(run)], "system.teacher")
    # Two checkpoints of one run, each named, are a snapshot ensemble the user chose; other runs count once each.
    other = shutil.copytree(run, tmp_path / "other")
    assert find_checkpoints([str(last), str(best)]) == [last, best]
    assert find_checkpoints([str(run), str(other)]) == [best, other / "checkpoints" / "best.ckpt"]


@pytest.mark.parametrize("given", ["", "  ", ["", "run"]])
def test_an_empty_checkpoint_path_is_refused_not_taken_for_the_working_folder(
    given: str | list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ckpt_path=$CKPT with the variable unset. Before: Path('') is '.', so inside a run folder predict.py,
    # evaluate.py, export.py and serve.py took that run without a word (elsewhere: "ckpt_path=. is a folder
    # without best.ckpt ..."), and train.py built the whole run before "checkpoint not found: .".
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path / ("." if isinstance(given, list) else "run"))
    with pytest.raises(MnistlabError) as refused:
        find_checkpoints(given)
    blank = given[0] if isinstance(given, list) else given
    assert str(refused.value) == (
        f"ckpt_path={blank!r} names no checkpoint: give a .ckpt file or a run folder (. for this one)"
    )
    with pytest.raises(MnistlabError, match=r"^ckpt_path='' names no checkpoint"):
        continue_from("", max_epochs=2)  # train.py's ckpt_path=


def _grid_job(sweep: Path, number: int, overrides: list[str], val_acc: float) -> Path:
    job = sweep / f"{number}_{','.join(overrides)}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "best.ckpt").write_bytes(b"")  # which files count is all that is read here
    (job / "job.json").write_text(json.dumps({"status": "ok"}))
    (job / "metrics.json").write_text(json.dumps({"val/acc_best": val_acc, "test/acc": val_acc - 0.01}))
    return job


def test_a_sweep_of_several_configurations_as_one_ensemble_says_so_and_names_the_best_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: evaluate.py on an Optuna search's folder said "an ensemble of its 6 finished jobs" and scored 0.2674,
    # with no word that its trials are different recipes, the worst ones included (the best validated at 0.5526).
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "multirun.yaml").write_text("{}")
    jobs = [
        _grid_job(grid, i, [f"optimizer.lr={lr}", "model=hidden"], val)
        for i, (lr, val) in enumerate([("0.1", 0.31), ("0.01", 0.55), ("0.001", 0.42)])
    ]
    assert len(find_checkpoints(grid)) == 3  # the ensemble is still every finished job, as documented
    assert capsys.readouterr().err.splitlines()[1] == (
        f"ckpt_path={grid}: its jobs are 3 configurations, not the folds or seeds of one, and the ensemble averages "
        f"them all; the best by validation alone is {shell_path_override('ckpt_path', jobs[1])} (val/acc_best 0.5500)"
    )
    seeds = tmp_path / "seeds"  # -m seed=1,2: one recipe, as the folds of a cv=K sweep are
    seeds.mkdir()
    (seeds / "multirun.yaml").write_text("{}")
    for i in (1, 2):
        _grid_job(seeds, i, ["model=hidden", f"seed={i}"], 0.5)
    assert len(find_checkpoints(seeds)) == 2
    assert "configurations" not in capsys.readouterr().err


def test_a_folder_of_runs_names_a_run_that_can_be_given_as_its_example(tmp_path: Path) -> None:
    # Before: the first run by name, here one with loose .ckpt files, which ckpt_path= then refused.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.ckpt").write_bytes(b"")
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(MnistlabError) as refused:
        find_checkpoints(tmp_path)
    assert f"give one run folder, e.g. ckpt_path={tmp_path / 'b'}, or list" in str(refused.value)
    assert find_checkpoints(tmp_path / "b") == [tmp_path / "b" / "checkpoints" / "last.ckpt"]
