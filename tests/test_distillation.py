"""Distillation: the loss by hand, a frozen teacher under both engines, provenance, and every refused teacher."""

from __future__ import annotations

import importlib
import logging
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch
from conftest import DATA_DIR, ROOT, compose_train, run_script, train, write_idx_set

from mnistlab.checkpoints import read_checkpoint
from mnistlab.composition import compose
from mnistlab.data.specs import MNIST
from mnistlab.errors import MnistlabError
from mnistlab.models import MLP
from mnistlab.resume.checkpoint import check_continuable
from mnistlab.systems import Classifier
from mnistlab.systems.distillation import Teacher, TrainingLoss, distillation_loss, sha256
from mnistlab.systems.losses import loss_fn
from mnistlab.teachers import load_teacher


def test_loss_matches_a_hand_computation() -> None:
    student = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
    teacher = [[3.0, 1.0, 0.0], [-1.0, 0.5, 2.0]]
    labels, t, alpha = [0, 2], 2.0, 0.3

    def softmax(z: list[float]) -> list[float]:
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    ce = sum(-math.log(softmax(s)[y]) for s, y in zip(student, labels, strict=True)) / 2
    kl = 0.0
    for s, z in zip(student, teacher, strict=True):
        p, q = softmax([v / t for v in z]), softmax([v / t for v in s])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = (1 - alpha) * ce + alpha * t**2 * kl / 2

    teacher_p = torch.tensor(teacher).div(t).softmax(-1)
    args = (torch.tensor(student), torch.tensor(labels), teacher_p, loss_fn("softmax"), t)
    assert distillation_loss(*args, alpha).item() == pytest.approx(expected, rel=1e-5)
    # alpha=0 is the labels' loss alone, alpha=1 the teacher's alone.
    assert distillation_loss(*args, 0.0).item() == pytest.approx(ce, rel=1e-5)
    assert distillation_loss(*args, 1.0).item() == pytest.approx(t**2 * kl / 2, rel=1e-5)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained 784-100-10 run folder (on [0, 1] pixels), which a test may delete."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    return train(run_dir, "model=hidden", "trainer.max_epochs=1", "trainer.limit_train_batches=100").dir


@pytest.mark.parametrize("engine", ["per_step", "chunked"])
def test_a_frozen_teacher_trains_the_student_under_both_engines(engine: str, teacher_dir: Path, tmp_path: Path) -> None:
    overrides = [
        "model=linear", f"system.teacher={teacher_dir}", "system.alpha=0.7", "system.temperature=3.0",
        f"engine={engine}", "trainer.max_epochs=1", "logger=csv",
        "data.download=false", "data.verify=false", "data.val_size=100",
    ]  # fmt: skip
    write_idx_set(tmp_path / "data" / "mnist", n_train=600)  # small, so that both engines run a whole epoch
    run = compose(compose_train(overrides, tmp_path, tmp_path / "data"))
    teacher = run.system.training_loss.teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = [p.detach().clone() for p in run.system.net.parameters()]
    run.trainer.fit(run.system, datamodule=run.datamodule)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # frozen
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert not all(map(torch.equal, student_before, run.system.net.parameters()))  # while the student learned
    assert not any(k.startswith("teacher") or ".teacher" in k for k in run.system.state_dict())
    ckpt = read_checkpoint(next((tmp_path / "run" / "checkpoints").glob("last.ckpt")))
    member = ckpt["teacher"]["members"][0]
    assert member["sha256"] == sha256(Path(member["path"])) and ckpt["teacher"]["alpha"] == 0.7
    assert not any("teacher" in k for k in ckpt["state_dict"])


def test_the_soft_term_moves_the_step(teacher_dir: Path) -> None:
    """The teacher's term really enters the loss the step minimises (alpha=0 would ignore the teacher)."""
    teacher = load_teacher(teacher_dir)
    x, y, logits = torch.rand(8, 1, 28, 28), torch.arange(8) % 10, torch.randn(8, 10)
    hard = loss_fn("softmax")
    assert TrainingLoss(hard, teacher, 4.0, 0.0)(logits, y, x).item() == pytest.approx(hard(logits, y).item())
    assert TrainingLoss(hard, teacher, 4.0, 0.5)(logits, y, x).item() != pytest.approx(hard(logits, y).item())
    # A student that standardises its inputs: the teacher (trained on [0, 1] pixels) still sees pixels.
    standardised = load_teacher(teacher_dir, (MNIST.mean, MNIST.std))
    assert torch.allclose(standardised((x - MNIST.mean) / MNIST.std, 2.0), teacher(x, 2.0), atol=1e-6)
    assert not torch.allclose(teacher((x - MNIST.mean) / MNIST.std, 2.0), teacher(x, 2.0), atol=1e-3)


def test_a_float64_student_is_taught_by_a_float32_teacher(teacher_dir: Path, tmp_path: Path) -> None:
    """Before: trainer.precision=64 fed float64 images to the float32 teacher, a traceback at the first step
    ("Input type (double) and bias type (float) should be the same")."""
    overrides = [
        "model=linear", f"system.teacher={teacher_dir}", "trainer.precision=64", "trainer.max_epochs=1",
        "logger=csv", "data.download=false", "data.verify=false", "data.val_size=100",
    ]  # fmt: skip
    write_idx_set(tmp_path / "data" / "mnist", n_train=300)
    run = compose(compose_train(overrides, tmp_path, tmp_path / "data"))
    run.trainer.fit(run.system, datamodule=run.datamodule)
    assert next(run.system.net.parameters()).dtype == torch.float64 and run.trainer.global_step > 0
    teacher = run.system.training_loss.teacher
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    assert teacher(x, 2.0).dtype == torch.float64
    assert torch.allclose(teacher(x, 2.0), teacher(x.float(), 2.0).double(), atol=1e-6)


def test_a_teacher_without_weight_is_not_run_and_the_loss_is_the_same_bit_for_bit() -> None:
    """Before: ``system.alpha=0`` still ran the teacher's forward at every step, for a term weighted 0."""
    torch.manual_seed(0)
    teacher = Teacher([MLP(hidden_units=0)], ["softmax"])
    calls = []
    teacher.nets[0].register_forward_hook(lambda *_: calls.append(1))
    x, y, hard = torch.rand(8, 1, 28, 28), torch.arange(8) % 10, loss_fn("softmax")
    skipped_logits = torch.randn(8, 10, requires_grad=True)
    full_logits = skipped_logits.detach().clone().requires_grad_()
    skipped = TrainingLoss(hard, teacher, 4.0, 0.0)(skipped_logits, y, x)
    assert calls == []  # no teacher forward
    full = distillation_loss(full_logits, y, teacher(x, 4.0), hard, 4.0, 0.0)  # as before, with the forward
    assert calls == [1]
    skipped.backward()
    full.backward()
    assert torch.equal(skipped, full) and torch.equal(skipped_logits.grad, full_logits.grad)
    # The teacher of the step that a CUDA graph records (mnistlab.engine.chunks): none at alpha=0 either.
    assert TrainingLoss(hard, teacher, 4.0, 0.0).step_teacher is None
    assert TrainingLoss(hard, teacher, 4.0, 0.5).step_teacher is teacher


def test_a_student_evaluates_after_its_teacher_is_deleted(teacher_dir: Path, tmp_path: Path) -> None:
    student = tmp_path / "student"
    result = run_script(
        "train.py", "model=linear", f"system.teacher={teacher_dir}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=20", f"hydra.run.dir={student}", "callbacks.progress_bar.refresh_rate=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    hparams = (student / "hparams.yaml").read_text()
    assert "system.teacher" in hparams and "system.alpha" in hparams  # the HParams record names the teacher
    shutil.rmtree(teacher_dir)
    result = run_script("evaluate.py", f"ckpt_path={student}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout


def test_a_resumed_student_keeps_its_teacher_from_any_folder(tmp_path: Path) -> None:
    """The saved config names the teacher as given, relative to the first launch's folder: resumed from
    another folder, the student was silently taught by that folder's outputs/teacher, another model."""
    first, other = tmp_path / "first", tmp_path / "other"
    quick = ("model=linear", "trainer.max_epochs=1", "trainer.limit_train_batches=20")
    teacher = train(first / "outputs" / "teacher", *quick).dir
    train(other / "outputs" / "teacher", *quick, "seed=1")  # same name, another model
    student = tmp_path / "student"
    made = run_script("train.py", *quick, "system.teacher=outputs/teacher", f"hydra.run.dir={student}", cwd=first)
    assert made.returncode == 0, made.stderr[-3000:]
    resumed = run_script("train.py", f"resume={student}", "trainer.max_epochs=2", cwd=other)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [member] = read_checkpoint(student / "checkpoints" / "last.ckpt")["teacher"]["members"]
    assert member["path"] == str((teacher / "checkpoints" / "best.ckpt").resolve())
    shutil.copy(other / "outputs" / "teacher" / "checkpoints" / "best.ckpt", member["path"])  # the file changed
    refused = run_script("train.py", f"resume={student}", "trainer.max_epochs=3", cwd=other)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        f"error: resume={student}: its distillation teacher {member['path']} is another file now (its SHA-256 "
        "differs from the checkpoint's record); the run cannot continue until you put the original back there"
    ), refused.stderr[-3000:]  # before: "... the run cannot continue", with no way forward


def _checkpoint(path: Path, net: torch.nn.Module, record: dict) -> Path:
    """A checkpoint of ``net`` as mnistlab writes one (built by hand: no system takes a network of another input)."""
    hparams = dict(Classifier(MLP(hidden_units=0)).hparams)
    hparams["net"] = record
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    ckpt = {"pytorch-lightning_version": lightning.__version__, "state_dict": state, "hyper_parameters": hparams}
    torch.save(ckpt, path)
    return path


def _refusal(tmp_path: Path, teacher: str) -> str:
    cfg = compose_train(["model=linear", f"system.teacher={teacher}"], tmp_path, DATA_DIR)
    with pytest.raises(MnistlabError) as e:
        compose(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_refused_teachers(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    # Before: it stopped at "checkpoint not found", without a word on how to make the teacher.
    assert _refusal(tmp_path, str(nowhere)) == (
        f"system.teacher: checkpoint not found: {nowhere}; train the teacher there first (the command is in "
        "docs/usage.md#distillation-a-trained-model-teaches-another-network), or name an existing run folder, "
        "checkpoint or sweep folder"
    )
    five = _checkpoint(tmp_path / "five.ckpt", MLP(hidden_units=0, num_classes=5),
                       {"_target_": "mnistlab.models.MLP", "hidden_units": 0, "num_classes": 5})  # fmt: skip
    assert "5 classes, the student 10" in _refusal(tmp_path, str(five))
    wide = torch.nn.Linear(100, 10)
    other_input = _checkpoint(tmp_path / "input.ckpt", wide,
                              {"_target_": "torch.nn.Linear", "in_features": 100, "out_features": 10})  # fmt: skip
    assert "(28x28 and 100x10)" in _refusal(tmp_path, str(other_input))  # the network's own words, one line
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"hyper_parameters": {"net": {}}, "where": pathlib.PurePosixPath("/etc")}, hostile)
    assert "refused" in _refusal(tmp_path, str(hostile))


@pytest.mark.parametrize("layer", ["Softmax", "Sigmoid"])
def test_a_teacher_returning_probabilities_is_refused(layer: str, tmp_path: Path, monkeypatch) -> None:
    """Before: a Keras-style teacher (ending in nn.Softmax) taught without a word; its probabilities p were taken as
    logits, and softmax(p / T) is nearly uniform (top class 0.12 of 10 at T=4 for p = 0.9)."""
    module = f"keras_{layer.lower()}"  # one module per case: Python keeps the first one it imports
    last = "nn.Softmax(-1)" if layer == "Softmax" else "nn.Sigmoid()"
    (tmp_path / f"{module}.py").write_text(
        "from torch import nn\n\n\nclass KerasNet(nn.Sequential):\n    def __init__(self) -> None:\n"
        f"        super().__init__(nn.Flatten(), nn.Linear(784, 10), {last})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    net = importlib.import_module(module).KerasNet()
    teacher = _checkpoint(tmp_path / "keras.ckpt", net, {"_target_": f"{module}.KerasNet"})
    assert _refusal(tmp_path, str(teacher)) == (
        f"system.teacher: {module}.KerasNet ({teacher}) returns probabilities (a final nn.{layer}), which the soft "
        f"targets would take as logits, so they would be nearly uniform and teach nothing; train the teacher without "
        f"its final nn.{layer}"
    )


@pytest.mark.parametrize(
    ("given", "shown"),
    [("true", "system.teacher=True"), ("0", "system.teacher=0"), ("{a:1}", "system.teacher={'a': 1}"),
     ("[[a]]", "system.teacher=[['a']]: ['a']")],
)  # fmt: skip
def test_a_teacher_that_is_no_path_is_refused_in_one_line(given: str, shown: str, tmp_path: Path) -> None:
    """Before: ``true`` and ``0`` ended in ``TypeError: 'bool' object is not iterable`` (a traceback, exit 1), ``[[a]]``
    in pathlib's TypeError, and ``{a:1}`` was read as its keys: ``checkpoint not found: a``."""
    assert _refusal(tmp_path, given) == (
        f"{shown} is not a path; give a run folder, a checkpoint, a sweep folder or a list of them, or "
        "system.teacher=null to train on the labels alone"
    )


def test_the_preset_before_its_teacher_says_where_the_teacher_command_is(tmp_path: Path) -> None:
    """Before: ``experiment=distill_hidden`` in a fresh folder said only "checkpoint not found"."""
    result = run_script("train.py", "experiment=distill_hidden", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: system.teacher: checkpoint not found: {tmp_path}/outputs/teacher_cnn; train ")
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made a run folder
    # The docs section it names (a GitHub heading anchor) holds the preset's own teacher command.
    slug = re.search(r"docs/usage\.md#([\w-]+)", line).group(1)
    sections = re.split(r"^## ", (ROOT / "docs" / "usage.md").read_text(), flags=re.M)
    [section] = [s for s in sections if re.sub(r"[^\w -]", "", s.splitlines()[0].lower()).replace(" ", "-") == slug]
    preset = (ROOT / "conf" / "experiment" / "distill_hidden.yaml").read_text()
    command = re.search(r"^#\s+(python scripts/train\.py .*)$", preset, flags=re.M).group(1)
    assert command in section


def test_a_run_that_has_not_finished_is_refused_as_a_teacher_unless_its_file_is_named(tmp_path: Path) -> None:
    """A Ctrl-C'd teacher's folder holds checkpoints/last.ckpt and no metrics.json: it taught, half-trained,
    without a word (a sweep folder leaves such jobs out of its ensemble and says so)."""
    run = tmp_path / "teacher"
    (run / "checkpoints").mkdir(parents=True)
    record = {"_target_": "mnistlab.models.MLP", "hidden_units": 0}
    last = _checkpoint(run / "checkpoints" / "last.ckpt", MLP(hidden_units=0), record)
    for given in (run, run / "checkpoints"):
        assert _refusal(tmp_path, str(given)) == (
            f"system.teacher={given} is a run that has not finished (still running, interrupted or failed: its test "
            f"never ran), so its checkpoints/last.ckpt is half-trained: finish it first (python scripts/train.py "
            f"resume={run}), or name the file, system.teacher={last}, to teach with it as it is"
        )
    assert compose(
        compose_train(["model=linear", f"system.teacher={last}"], tmp_path, DATA_DIR)
    ).system.training_loss.teacher
    (run / "metrics.json").write_text("{}")  # its test ran: the run finished
    assert compose(
        compose_train(["model=linear", f"system.teacher={run}"], tmp_path, DATA_DIR)
    ).system.training_loss.teacher
    # A failed job of a sweep (job.json) is refused too, and finished by its sweep.
    job = tmp_path / "sweep" / "0_seed"  # (a real name holds "=", which an override must quote)
    shutil.copytree(run, job)
    (job.parent / "multirun.yaml").write_text("{}")
    (job / "job.json").write_text('{"status": "failed"}')
    assert f"finish its sweep first (the sweep's own command plus hydra.sweep.dir={job.parent})" in _refusal(
        tmp_path, str(job)
    )


@pytest.mark.parametrize(("given", "shown"), [("", "''"), ("[]", "[]")])
def test_an_empty_teacher_is_refused_not_taken_for_null(given: str, shown: str, tmp_path: Path) -> None:
    """Before: ``system.teacher=$TEACHER`` with the variable unset trained on the labels alone without a word."""
    assert _refusal(tmp_path, given) == (
        f"system.teacher={shown} names no teacher: give a run folder, a checkpoint or a sweep folder, "
        "or system.teacher=null to train on the labels alone"
    )


def test_an_infinite_temperature_is_refused_before_any_work() -> None:
    """Before: T=inf passed the range check, gave T^2 * KL = inf * 0, and the run trained until the divergence check
    said 'train/loss is nan ...: lower optimizer.lr'."""
    from mnistlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^system.temperature=inf is out of range: must be a finite number > 0$"):
        TrainingLoss(loss_fn("softmax"), None, temperature=float("inf"))
    TrainingLoss(loss_fn("softmax"), None, temperature=1e6)  # large but finite: the soft targets are nearly flat


OPENS = """
import atexit, runpy, sys
watched, opens = sys.argv[1], []
sys.addaudithook(lambda event, args: opens.append(1) if event == "open" and str(args[0]) == watched else None)
atexit.register(lambda: print(f"opens of the teacher: {len(opens)}", file=sys.stderr))
sys.argv = ["scripts/train.py", *sys.argv[2:]]
runpy.run_path("scripts/train.py", run_name="__main__")
"""


def _teacher_opens(teacher: Path, *overrides: str) -> int:
    """How often one launch of scripts/train.py opens the teacher's checkpoint file (the interpreter's audit events)."""
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", OPENS, str(teacher), *overrides, "callbacks.progress_bar.refresh_rate=0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return int(re.findall(r"^opens of the teacher: (\d+)$", done.stderr, re.M)[-1])


def test_a_resumed_student_reads_its_teacher_once_as_its_first_launch_did(tmp_path: Path) -> None:
    # Before: the first launch opened the teacher's best.ckpt 6 times (its safety checks, the load and one
    # SHA-256), the resume 8: the file was hashed in full twice more, by the check of the teacher against the
    # checkpoint's record before Hydra writes into the run folder, again as the job starts, and as it loads.
    quick = ("model=linear", "trainer.max_epochs=1", "trainer.limit_train_batches=20")
    teacher = train(tmp_path / "teacher", *quick).dir / "checkpoints" / "best.ckpt"
    student = tmp_path / "student"
    first = _teacher_opens(teacher, *quick, f"system.teacher={teacher}", f"hydra.run.dir={student}")
    resumed = _teacher_opens(teacher, f"resume={student}", "trainer.max_epochs=2")
    assert resumed == first
    [member] = read_checkpoint(student / "checkpoints" / "last.ckpt")["teacher"]["members"]
    assert member["sha256"] == sha256(teacher)  # what the resume checked is what it records


def test_a_new_run_from_a_distilled_checkpoint_without_its_teacher_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``ckpt_path=`` of a student continued on the labels alone without a word (``resume=`` keeps the teacher)."""
    # A teacher of its own: the module's teacher_dir is deleted by an earlier test.
    teacher_dir = train(
        tmp_path / "teacher", "model=linear", "trainer.max_epochs=1", "trainer.limit_train_batches=20"
    ).dir
    write_idx_set(tmp_path / "data" / "mnist", n_train=600)
    quick = ["model=linear", "trainer.max_epochs=1", "data.download=false", "data.verify=false", "data.val_size=100"]
    student = compose(compose_train([*quick, f"system.teacher={teacher_dir}"], tmp_path, tmp_path / "data"))
    student.trainer.fit(student.system, datamodule=student.datamodule)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    [member] = read_checkpoint(last)["teacher"]["members"]
    on = compose_train([*quick, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "on", tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="mnistlab"):
        check_continuable(compose(on).system, last)
        taught = compose(
            compose_train([*quick, f"system.teacher={teacher_dir}"], tmp_path / "taught", tmp_path / "data")
        )
        check_continuable(taught.system, last)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mnistlab.resume")] == [
        f"ckpt_path={last} was distilled from a teacher; this run trains on from its weights on the labels alone "
        f"(system.teacher={member['path']} distils on)"
    ]
