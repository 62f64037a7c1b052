"""A saturated sigmoid head: predict.py and serve.py name the class that evaluate.py counts, not the first of a tie."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script, train, write_idx_set

from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST
from mnistlab.serving.api import Decoded, DigitAPI

pytestmark = pytest.mark.slow  # three script launches

# Logits 30 and 40 both give sigmoid 1.0 in float32: the probabilities of classes 0 and 1 tie at 0.5.
LOGITS = [30.0, 40.0, *[-5.0] * 8]


@pytest.fixture(scope="module")
def saturated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real sigmoid-head run's checkpoint whose network answers ``LOGITS`` for any image, and its data folder."""
    root = tmp_path_factory.mktemp("saturated")
    data = write_idx_set(root / "tiny")
    tiny = (f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10")
    run = train(root / "run", "model=linear", "system.head=sigmoid", *tiny, "trainer.max_epochs=1")
    checkpoint = torch.load(run.checkpoint, weights_only=True)
    checkpoint["state_dict"]["net.layers.1.weight"].zero_()  # as a high learning rate leaves it: saturated
    checkpoint["state_dict"]["net.layers.1.bias"].copy_(torch.tensor(LOGITS))
    torch.save(checkpoint, root / "saturated.ckpt")
    return root / "saturated.ckpt", data


def test_predict_names_the_class_evaluate_counts(saturated: tuple[Path, Path], tmp_path: Path) -> None:
    # Before: predict.py said "prediction 0  confidence 48.70%" for every image (the argmax of the tied
    # probabilities), whereas evaluate.py counted class 1 (the argmax of the logits): test/acc 0.1000 for
    # labels 0-9, and predict.py's answers scored 0.1000 too, but on other images.
    ckpt, data = saturated
    evaluated = run_script("evaluate.py", f"ckpt_path={ckpt}", f"data.root={data}", f"hydra.run.dir={tmp_path}/eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    test_acc = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"]
    indices = ",".join(map(str, range(20)))
    predicted = run_script("predict.py", f"ckpt_path={ckpt}", f"data.root={data}", f"index=[{indices}]", "format=json")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    records = json.loads(predicted.stdout)
    assert all(r["probabilities"][0] == r["probabilities"][1] == r["confidence"] for r in records)  # the tie
    assert {r["prediction"] for r in records} == {1} and {r["class"] for r in records} == {"1"}
    hits = [r["index"] for r in records if r["prediction"] == r["label"]]
    assert hits == [1, 11] and len(hits) / len(records) == pytest.approx(test_acc)
    text = run_script("predict.py", f"ckpt_path={ckpt}", f"data.root={data}", "index=3")
    assert text.returncode == 0, text.stderr[-3000:]
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.endswith("<- prediction")] == ["1"]
    assert lines[-1] == "prediction 1  confidence 48.70%"  # class 0 holds 48.70% too


def test_serve_names_the_class_evaluate_counts(saturated: tuple[Path, Path]) -> None:
    # Before: the server answered {"prediction": 0, "class": "0", ...} for the same tie.
    ckpt, data = saturated
    api = DigitAPI(str(ckpt), accelerator="cpu")
    api.setup("cpu")  # the inference worker's own loading, here in this process
    images = load_split(data, MNIST, train=False, verify=False)[0][:3].numpy().astype(np.float32) / 255
    answers = [api.encode_response(out) for out in api.predict_all([Decoded(img, False) for img in images])]
    assert [(a["prediction"], a["class"]) for a in answers] == [(1, "1")] * 3
    assert all(a["probabilities"][0] == a["probabilities"][1] == a["confidence"] for a in answers)


def test_the_grid_of_mistakes_shows_the_class_test_acc_counts(saturated: tuple[Path, Path], tmp_path: Path) -> None:
    # Before: evaluate.py's "Most confident mistakes" took the argmax of the tied probabilities: 18 images
    # titled "pred 0" (those of label 1, counted right by test/acc, among them), none "pred 1".
    import lightning.pytorch as pl

    from mnistlab.checkpoints import load_system
    from mnistlab.evaluation import TestReport
    from mnistlab.evaluation.evaluate import saved_datamodule

    ckpt, data = saturated
    system, saved = load_system(ckpt)
    report = TestReport(None, num_mistakes=32)
    trainer = pl.Trainer(callbacks=[report], logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(system, datamodule=saved_datamodule(saved, {"root": str(data)}), verbose=False)
    _, _, labels, preds = report._mistakes
    assert report.result.accuracy == pytest.approx(0.1)  # labels 0-9 twice, class 1 counted: images 1 and 11
    assert preds.tolist() == [1] * 18 and 1 not in labels.tolist()
