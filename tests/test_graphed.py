"""Which runs record their training step as a CUDA graph (``mnistlab.systems.graphed``).

The decision is made from plain facts, so it is tested here on any machine; the recording
and its bit-for-bit equality with eager steps are tested on a GPU (tests/test_gpu.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnistlab.models import CNN, MLP
from mnistlab.systems.graphed import graph_blockers, network_blockers, optimizer_blockers

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


def test_randomness_or_unknown_layers_keep_the_eager_step() -> None:
    assert network_blockers(CNN()) == ["classifier.1 (Dropout) draws random numbers"]

    class Mine(nn.Module):  # its forward could do anything: host reads, Python branches on values
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    assert network_blockers(Mine()) == ["the network (Mine) is not a layer known to be graph-safe"]
    bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(784, momentum=None), nn.Linear(784, 10))
    assert network_blockers(bn) == ["1 (BatchNorm1d) with momentum=None reads its batch count on the host"]


def test_optimizers_whose_recorded_step_could_differ_keep_the_eager_step() -> None:
    params = list(MLP().parameters())
    assert optimizer_blockers(torch.optim.Adam(params)) == ["Adam without fused=True"]
    assert optimizer_blockers(torch.optim.RMSprop(params)) == ["optimizer RMSprop is not one known to record exactly"]
    assert optimizer_blockers(torch.optim.Adam(params, lr=torch.tensor(1e-3), fused=True)) == ["a tensor learning rate"]
