"""Networks and losses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from conftest import run_script, write_idx_set
from torch import nn

from mnistlab.models import CNN, MLP
from mnistlab.systems.losses import keras_sigmoid_nll, probabilities, probability_outputs
from mnistlab.systems.one_image_batch import _fails_on_one_image


@pytest.mark.parametrize(("hidden_units", "params"), [(0, 7_850), (100, 79_510)])
def test_shapes_and_parameter_counts(hidden_units: int, params: int) -> None:
    net = MLP(hidden_units)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_keras_init_is_glorot_uniform_with_zero_bias() -> None:
    torch.manual_seed(0)
    net = MLP(init="keras")
    first = net.layers[1]
    limit = math.sqrt(6 / (784 + 100))
    assert first.weight.abs().max() <= limit and first.weight.abs().max() > 0.95 * limit
    assert torch.count_nonzero(first.bias) == 0


def test_sigmoid_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-30.0, 0.0, 40.0]])
    target = torch.tensor([0, 0])
    # Row 1: sigmoids normalised to sum 1. Row 2: sigmoid(-30) ~ 9e-14 is clipped to 1e-7
    # and sigmoid(40) rounds to 1.0 in float32, so it is clipped to 1 - 1e-7.
    s1 = [1 / (1 + math.exp(-v)) for v in (2.0, -1.0, 0.5)]
    s2 = [1e-7, 0.5, 1 - 1e-7]
    expected = (-math.log(s1[0] / sum(s1)) - math.log(s2[0] / sum(s2))) / 2
    assert keras_sigmoid_nll(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_sigmoid_probabilities_are_normalised_sigmoids() -> None:
    net = MLP(hidden_units=0)
    logits = net(torch.rand(4, 1, 28, 28))
    probs = probabilities(logits, "sigmoid")
    torch.testing.assert_close(probs, logits.sigmoid() / logits.sigmoid().sum(-1, keepdim=True))
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))


def test_cnn_shapes_and_parameter_count() -> None:
    net = CNN()
    assert sum(p.numel() for p in net.parameters()) == 62_538 <= 120_000
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert CNN(channels=[8, 16], num_classes=26)(torch.rand(2, 1, 28, 28)).shape == (2, 26)


def test_bad_mlp_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"model\.init='tanh' must be 'torch' or 'keras'"):
        MLP(init="tanh")
    with pytest.raises(ValueError, match=r"model\.hidden_units=-1 must be >= 0 \(0: no hidden layer\)"):
        MLP(hidden_units=-1)


def test_the_one_image_probe_leaves_the_network_and_the_random_stream_as_they_were() -> None:
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 10)).eval()
    before = {key: value.clone() for key, value in net.state_dict().items()}
    state = torch.random.get_rng_state()
    assert _fails_on_one_image(net).startswith("Expected more than 1 value per channel when training")
    assert not net.training and torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[key], value) for key, value in net.state_dict().items())
    cnn = CNN()  # BatchNorm2d normalises over 24x24 positions: one image is enough
    running_mean = cnn.features[1].running_mean.clone()
    assert _fails_on_one_image(cnn) is None and cnn.training
    assert torch.equal(cnn.features[1].running_mean, running_mean)  # the probe's batch statistics are not kept


def test_a_network_that_returns_probabilities_is_told_apart_from_logits() -> None:
    flat = [nn.Flatten(), nn.Linear(784, 10)]
    assert probability_outputs(nn.Sequential(*flat, nn.Softmax(-1))) == "nn.Softmax"
    assert probability_outputs(nn.Sequential(*flat, nn.Sigmoid())) == "nn.Sigmoid"
    assert probability_outputs(nn.Sequential(*flat, nn.LogSoftmax(-1))) is None  # log-probabilities are logits
    for seed in range(50):  # freshly built logits of every shipped network have both signs
        torch.manual_seed(seed)
        assert [probability_outputs(net) for net in (MLP(0), MLP(100), CNN())] == [None, None, None]
    net = CNN().train()
    probability_outputs(net)
    assert net.training  # the probe's eval mode is undone


SOFTMAX_NET = """
from torch import nn


class SoftmaxNet(nn.Module):  # a Keras Dense(10, activation="softmax"), ported as it is
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))

    def forward(self, x):
        return self.layers(x)
"""


def test_training_a_network_that_returns_probabilities_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mynets.py").write_text(SOFTMAX_NET)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "softmax_net.yaml").write_text("_target_: mynets.SoftmaxNet\n")
    result = run_script(
        "train.py", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=softmax_net",
        f"data.root={write_idx_set(tmp_path / 'tiny')}", "data.download=false", "data.verify=false",
        "data.val_size=10", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stdout.splitlines() if "returns probabilities" in line]
    assert len(warnings) == 1, result.stdout[-3000:]
    assert warnings[0].endswith(
        "model: mynets.SoftmaxNet returns probabilities (its outputs lie in [0, 1] and sum to 1), but the loss "
        "takes logits: it trains, slowly and to a worse accuracy; drop the network's final nn.Softmax"
    )


def test_a_checkpoint_of_a_network_that_returns_probabilities_predicts_its_own_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: predict.py, serve.py and export.py took the softmax of its softmax (confidences near 0.1-0.25 for
    10 classes) without a word; evaluate.py loaded it silently too. Now they say so in training's way, once, and
    its probabilities are its outputs."""
    import lightning.pytorch as pl

    from mnistlab.data import MNISTDataModule
    from mnistlab.evaluation.callbacks import TestReport
    from mnistlab.evaluation.ensemble import Ensemble, load_model
    from mnistlab.evaluation.export import export
    from mnistlab.evaluation.predictors import CheckpointPredictor
    from mnistlab.systems import Classifier

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "probnets.py").write_text(SOFTMAX_NET)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    # A name of its own: another test of this worker may have imported a different mynets already.
    import probnets

    data = write_idx_set(tmp_path / "tiny")
    dm = MNISTDataModule(str(data), download=False, verify=False, val_size=0, batch_size=20)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Classifier(probnets.SoftmaxNet()), datamodule=dm)
    ckpt = tmp_path / "softmax.ckpt"
    trainer.save_checkpoint(ckpt)
    images = torch.rand(5, 1, 28, 28)
    caplog.clear()
    predictor = CheckpointPredictor(ckpt, accelerator="cpu")
    warned = [r.getMessage() for r in caplog.records if "returns probabilities" in r.getMessage()]
    assert warned == [
        "model: probnets.SoftmaxNet returns probabilities (its outputs lie in [0, 1] and sum to 1), but its loss took "
        "them for logits: it trained slowly and to a worse accuracy; its probabilities here are its outputs as they "
        "are, not passed through the head again; drop the network's final nn.Softmax and train it again"
    ]
    caplog.clear()
    CheckpointPredictor(ckpt, accelerator="cpu", warn=False)  # a server's worker: its main process said it
    assert not [r for r in caplog.records if "returns probabilities" in r.getMessage()]
    with torch.no_grad():
        outputs = predictor.system.net(images)  # (5, 10), rows of probabilities
    probs, classes = predictor.classify(images)  # predict.py
    torch.testing.assert_close(probs, outputs)
    assert torch.equal(classes, outputs.argmax(-1))
    served, served_classes = predictor.resident("cpu")(images)  # serve.py
    torch.testing.assert_close(served, outputs)
    assert torch.equal(served_classes, classes)
    system, _ = load_model([ckpt, ckpt])  # an ensemble of two: the mean of their own probabilities
    assert isinstance(system.net, Ensemble)
    torch.testing.assert_close(system.net.member_probabilities(images).mean(0), outputs)
    path, _, _ = export(ckpt, tmp_path / "export", fmt="torchscript", data_overrides={"root": str(data)})
    torch.testing.assert_close(torch.jit.load(str(path))(images), outputs)  # export.py's file
    report = TestReport()  # evaluate.py's: its grid of the most confident mistakes titles each with its confidence
    pl.Trainer(logger=False, callbacks=[report], enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=tmp_path).test(predictor.system, datamodule=dm, verbose=False)  # fmt: skip
    confidence, mistaken = report._mistakes[:2]
    with torch.no_grad():
        torch.testing.assert_close(confidence, predictor.system.net(mistaken).max(-1).values)
    # A network of logits is unchanged: its probabilities are the head's.
    plain = Classifier(MLP())  # its defaults: the record rebuilds it
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(plain, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    caplog.clear()
    logits_predictor = CheckpointPredictor(tmp_path / "plain.ckpt", accelerator="cpu")
    assert not [r for r in caplog.records if "returns probabilities" in r.getMessage()]
    with torch.no_grad():
        logits = logits_predictor.system.net(images)
    torch.testing.assert_close(logits_predictor.classify(images)[0], logits.softmax(-1))


def test_evaluating_a_network_that_returns_probabilities_says_so_once(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mynets.py").write_text(SOFTMAX_NET)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "softmax_net.yaml").write_text("_target_: mynets.SoftmaxNet\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")])}
    data = write_idx_set(tmp_path / "tiny")
    tiny = (f"data.root={data}", "data.download=false", "data.verify=false")
    trained = run_script(
        "train.py", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=softmax_net", *tiny, "data.val_size=10",
        "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={tmp_path / 'run'}", env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    for script, args in (("evaluate.py", tiny), ("predict.py", ("index=1", f"data.root={data}"))):
        result = run_script(script, f"ckpt_path={tmp_path / 'run'}", *args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        output = result.stdout + result.stderr
        assert output.count("returns probabilities") == 1, output[-3000:]
        assert "its probabilities here are its outputs as they are" in output
