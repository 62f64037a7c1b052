"""mnistlab from Python, as a notebook uses it: the data module and the system under a plain Lightning Trainer.

No Hydra here: ``MNISTDataModule`` and ``Classifier`` built with explicit arguments, fitted by
``lightning.pytorch.Trainer``, and their checkpoints read back with ``Classifier.load_from_checkpoint``.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from mnistlab.data import FASHION_MNIST, MNISTDataModule
from mnistlab.errors import MnistlabError
from mnistlab.models import MLP
from mnistlab.systems import Classifier


class ActNet(nn.Module):
    """A network whose argument changes no weight shape: the same state_dict fits either activation."""

    def __init__(self, act: str = "relu") -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh() if act == "tanh" else nn.ReLU(),
                                    nn.Linear(16, 10))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def fitted_checkpoint(system: Classifier, data: Path, path: Path) -> Path:
    """``system`` trained for two steps by a plain Trainer on the tiny data set, saved as ``path``."""
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=path.parent)  # fmt: skip
    dm = MNISTDataModule(str(data), download=False, verify=False, val_size=0, batch_size=20)
    trainer.fit(system, datamodule=dm)
    trainer.save_checkpoint(path)
    return path


def test_arguments_the_record_lacks_are_one_error_not_a_state_dict_traceback(tiny_data: Path, tmp_path: Path) -> None:
    """``Classifier(MLP(hidden_units=8))`` records the class alone: its defaults (100 units) cannot take the weights."""
    path = fitted_checkpoint(Classifier(MLP(hidden_units=8)), tiny_data, tmp_path / "mlp.ckpt")
    with pytest.raises(MnistlabError) as caught:
        Classifier.load_from_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(
        "checkpoint network: mnistlab.models.mlp.MLP with its default arguments is not the network that was saved "
        "('(1): Linear(in_features=784, out_features=100, bias=True)' where the saved one has "
        "'(1): Linear(in_features=784, out_features=8, bias=True)')"
    ), message
    assert "Classifier.load_from_checkpoint(path, net=MLP(...))" in message and "\n" not in message
    # What the message advises loads the weights.
    loaded = Classifier.load_from_checkpoint(path, net=MLP(hidden_units=8))
    assert torch.equal(
        loaded.net.layers[1].weight, torch.load(path, weights_only=True)["state_dict"]["net.layers.1.weight"]
    )


def test_a_default_network_of_another_activation_is_refused_not_loaded(tiny_data: Path, tmp_path: Path) -> None:
    """Same weight shapes, another network: before, it loaded without a word and predicted with ReLU for Tanh."""
    path = fitted_checkpoint(Classifier(ActNet("tanh")), tiny_data, tmp_path / "act.ckpt")
    with pytest.raises(MnistlabError, match=r"\('\(2\): ReLU\(\)' where the saved one has '\(2\): Tanh\(\)'\)"):
        Classifier.load_from_checkpoint(path)
    assert isinstance(Classifier.load_from_checkpoint(path, net=ActNet("tanh")).net.layers[2], nn.Tanh)


def test_recorded_or_default_arguments_load_as_before(tiny_data: Path, tmp_path: Path) -> None:
    """A net_config records the arguments (no repr is kept), and a network of default arguments needs none."""
    config = {"_target_": f"{__name__}.ActNet", "act": "tanh"}
    recorded = fitted_checkpoint(Classifier(ActNet("tanh"), net_config=config), tiny_data, tmp_path / "rec.ckpt")
    assert "network_repr" not in torch.load(recorded, weights_only=True)
    assert isinstance(Classifier.load_from_checkpoint(recorded).net.layers[2], nn.Tanh)
    defaults = fitted_checkpoint(Classifier(MLP()), tiny_data, tmp_path / "default.ckpt")
    assert Classifier.load_from_checkpoint(defaults).net.layers[1].out_features == 100


def test_a_class_alone_record_whose_class_needs_arguments_says_how_to_load(tiny_data: Path, tmp_path: Path) -> None:
    path = fitted_checkpoint(Classifier(MLP(hidden_units=8)), tiny_data, tmp_path / "mlp.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["net"] = {"_target_": f"{__name__}.NeedsWidth"}
    torch.save(ckpt, path)
    with pytest.raises(MnistlabError, match=r"NeedsWidth\(\.\.\.\)\) and the network's arguments"):
        Classifier.load_from_checkpoint(path)


class NeedsWidth(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = nn.Linear(784, width)


@pytest.mark.parametrize("stage", ["fit", "validate", "predict"])
def test_a_network_narrower_than_the_data_is_refused(tiny_data: Path, tmp_path: Path, stage: str) -> None:
    """A 5-logit network on 10-class MNIST: before, torch's ``IndexError: Target 6 is out of bounds`` at a step."""
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=20, batch_size=20)
    system = Classifier(MLP(hidden_units=0, num_classes=5))
    message = "the network returns 5 logits but the data module has 10 classes (MNISTDataModule.classes); "
    with pytest.raises(MnistlabError, match=re.escape(message + "give the network 10 outputs, e.g. num_classes=10")):
        getattr(trainer, stage)(system, datamodule=dm)
    assert trainer.global_step == 0


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_a_float64_network_is_refused_by_a_trainer_of_ones_own_too(tiny_data: Path, tmp_path: Path, stage: str) -> None:
    """Before: torch's "mat1 and mat2 must have the same dtype" at the first batch (scripts/train.py refused it)."""
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    dm = MNISTDataModule(str(tiny_data), download=False, verify=False, val_size=20, batch_size=20)
    message = "torch.nn.modules.container.Sequential has float64 weights (1.weight), but trainer.precision=32-true"
    with pytest.raises(MnistlabError, match=re.escape(message)):
        getattr(trainer, stage)(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()), datamodule=dm)
    assert trainer.global_step == 0
    # Lightning's 64-bit precision casts network and images: that fit is taken.
    trainer = pl.Trainer(max_steps=1, precision=64, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).double()), datamodule=dm)
    assert trainer.global_step == 1


def test_a_network_that_returns_probabilities_gets_its_warning_in_python_too(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Keras ``Dense(10, activation="softmax")`` ported as it is: before, only scripts/train.py said so."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))
    with caplog.at_level(logging.WARNING, logger="mnistlab"):
        fitted_checkpoint(Classifier(net), tiny_data, tmp_path / "softmax.ckpt")
    said = [r.getMessage() for r in caplog.records if "returns probabilities" in r.getMessage()]
    assert said == [
        "model: torch.nn.modules.container.Sequential returns probabilities (its outputs lie in [0, 1] and sum to 1), "
        "but the loss takes logits: it trains, slowly and to a worse accuracy; drop the network's final nn.Softmax"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mnistlab"):
        fitted_checkpoint(Classifier(MLP(hidden_units=8)), tiny_data, tmp_path / "logits.ckpt")
    assert not [r for r in caplog.records if "returns probabilities" in r.getMessage()]


def test_an_optimizer_no_checkpoint_could_rebuild_is_refused_when_the_system_is_built() -> None:
    """Before: an ``AttributeError`` about ``__qualname__`` for a built optimizer, and a lambda trained, saved its
    checkpoint and only then failed to load it (``_target_='__main__.<lambda>' is not a dotted path``)."""
    net = MLP(hidden_units=8)
    built = "optimizer: got a built Adam object, not its factory; give a class or a module-level function, or a "
    with pytest.raises(
        MnistlabError, match=re.escape(built + "functools.partial of one, e.g. partial(torch.optim.Adam")
    ):
        Classifier(net, optimizer=torch.optim.Adam(net.parameters()))
    with pytest.raises(MnistlabError, match=r"optimizer: \S*<lambda> cannot be recorded in a checkpoint"):
        Classifier(net, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    with pytest.raises(MnistlabError, match=r"positional settings \(.*0\.1\), which .*; give them by keyword"):
        Classifier(net, optimizer=partial(torch.optim.SGD, net.parameters(), 0.1))
    assert Classifier(net, optimizer=torch.optim.SGD).hparams.optimizer == {"target": "torch.optim.sgd.SGD"}


def test_a_system_without_class_names_takes_the_data_modules(tiny_data: Path, tmp_path: Path) -> None:
    """Before: a Python-built system on Fashion-MNIST named a coat "4" in its tables, predictions and checkpoints."""
    system = Classifier(MLP())
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    dm = MNISTDataModule(str(tiny_data), dataset="fashion_mnist", download=False, verify=False, val_size=0)
    trainer.fit(system, datamodule=dm)
    assert system.class_names == list(FASHION_MNIST.classes) and system.class_names[4] == "Coat"
    trainer.save_checkpoint(tmp_path / "fashion.ckpt")
    assert Classifier.load_from_checkpoint(tmp_path / "fashion.ckpt").class_names == list(FASHION_MNIST.classes)
    named = Classifier(MLP(hidden_units=8), class_names=list("abcdefghij"))  # given names are kept
    trainer.test(named, datamodule=dm, verbose=False)
    assert named.class_names == list("abcdefghij")
