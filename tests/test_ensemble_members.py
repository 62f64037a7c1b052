"""An ensemble's members, each tested alone: the accuracy each member's own test measured."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from mnistlab.evaluation.ensemble import Ensemble
from mnistlab.evaluation.evaluate import member_accuracies
from mnistlab.evaluation.predictors import ProbabilityNet
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
