"""Which runs record their training step as a CUDA graph (``mnistlab.engine.graph``).

The decision is made from plain facts, so it is tested here on any machine; the recording
and its bit-for-bit equality with eager steps are tested on a GPU (tests/test_gpu.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnistlab.engine.graph import graph_blockers, network_blockers, optimizer_blockers
from mnistlab.models import CNN, MLP
from mnistlab.systems.distillation import Teacher

CUDA = torch.device("cuda")


def blockers(net: nn.Module | None = None, optimizer=None, **kwargs) -> list[str]:
    net = net or MLP()
    optimizer = optimizer or torch.optim.Adam(net.parameters(), fused=True)
    facts = {"device": CUDA, "raw_steps": True, "plain_precision": True, "scheduler": None} | kwargs
    return graph_blockers(net=net, optimizer=optimizer, **facts)


def test_the_default_run_on_a_gpu_is_recorded() -> None:
    assert blockers() == []
    assert blockers(MLP(hidden_units=0)) == []
    net = MLP()
    assert blockers(net, torch.optim.AdamW(net.parameters(), fused=True)) == []
    assert blockers(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)) == []
    assert blockers(CNN(dropout=0.0)) == []


def test_a_cpu_run_is_never_recorded() -> None:
    assert blockers(device=torch.device("cpu")) == ["training on cpu"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"enabled": False}, "system.cuda_graph=false"),
        ({"raw_steps": False}, "Lightning's per-step wrappers are needed"),
        ({"plain_precision": False}, "a mixed or reduced precision"),
        ({"scheduler": object()}, "a learning-rate scheduler changes the rate every step"),
    ],
)
def test_run_settings_that_keep_the_eager_step(change: dict, reason: str) -> None:
    assert any(reason in b for b in blockers(**change)), blockers(**change)


class UsersNet(nn.Module):
    """A user's own network class of standard layers (no dropout): no class name of mnistlab's."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 13 * 13, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, 10)


def test_a_users_network_of_standard_layers_is_recorded() -> None:
    assert blockers(UsersNet()) == []
    assert network_blockers(UsersNet()) == []
    flat = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))
    assert blockers(flat) == []


def test_randomness_or_unknown_layers_keep_the_eager_step() -> None:
    assert network_blockers(CNN()) == ["classifier.1 (Dropout) draws random numbers"]

    class Scale(nn.Module):  # a leaf of the user's own: its forward could do anything on the host
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    net = nn.Sequential(nn.Flatten(), Scale(), nn.Linear(784, 10))
    assert network_blockers(net) == ["1 (Scale) is not a layer known to be graph-safe"]
    assert network_blockers(nn.Sequential(nn.Flatten(), nn.RNN(784, 10))) == [
        "1 (RNN) is not a layer known to be graph-safe"
    ]

    class OwnWeight(nn.Module):  # a container with a parameter of its own, used in a forward we cannot see
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)
            self.temperature = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1)) / self.temperature

    assert network_blockers(OwnWeight()) == ["the network (OwnWeight) holds tensors of its own beside its layers"]
    bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(784, momentum=None), nn.Linear(784, 10))
    assert network_blockers(bn) == ["1 (BatchNorm1d) with momentum=None reads its batch count on the host"]


def test_optimizers_whose_recorded_step_could_differ_keep_the_eager_step() -> None:
    params = list(MLP().parameters())
    assert optimizer_blockers(torch.optim.Adam(params)) == ["Adam without fused=True"]
    assert optimizer_blockers(torch.optim.RMSprop(params)) == ["optimizer RMSprop is not one known to record exactly"]
    assert optimizer_blockers(torch.optim.Adam(params, lr=torch.tensor(1e-3), fused=True)) == ["a tensor learning rate"]


def test_a_frozen_teacher_is_judged_in_eval_mode() -> None:
    teacher = Teacher([CNN(dropout=0.5)], ["softmax"])  # frozen: its dropout is off, its batch norms fixed
    assert blockers(teacher=teacher) == []
    teacher.train()  # a teacher never leaves eval mode, so it stays graph-safe
    assert blockers(teacher=teacher) == []
    assert blockers(CNN(), teacher=teacher) == ["classifier.1 (Dropout) draws random numbers"]  # the student's
    odd = Teacher([nn.Sequential(nn.Flatten(), nn.RNN(784, 10))], ["softmax"])
    assert blockers(teacher=odd) == ["teacher.nets.0.1 (RNN) is not a layer known to be graph-safe"]
