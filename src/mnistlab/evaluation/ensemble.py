"""Several trained networks as one model: the mean of their probabilities (e.g. the K fold models of ``cv=K``).

The ensemble is a plain network (``forward(x) -> logits``) inside the one ``Classifier``, so evaluate,
predict, export and serve run it by the code paths of a single checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistlab.checkpoints import load_system
from mnistlab.data.specs import input_stats
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.predictors import ProbabilityNet
from mnistlab.systems import Classifier
from mnistlab.systems.losses import warn_of_probability_outputs

# What members must share to be averaged: the same classes of the same images.
AGREE = ("dataset",)


class Ensemble(nn.Module):
    """(N, 1, 28, 28) pixels in [0, 1] -> (N, C) logits whose softmax is the mean of the members' probabilities.

    The logits are ``log(mean_m p_m)``: as the ``softmax`` head of a ``Classifier`` they give the mean
    back (its log-sum-exp is log 1 = 0), and its cross-entropy is the ensemble's negative log-likelihood.
    Each member brings its own head and input standardisation (``ProbabilityNet``), so members trained
    with and without ``data.normalize`` or with either head average alike.

    Args:
        members: The networks as deployed: pixels in [0, 1] -> (N, C) probabilities.
    """

    def __init__(self, members: Sequence[ProbabilityNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(M, N, C) probabilities of each member."""
        return torch.stack([member(images) for member in self.members])

    def member_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(M, N, C) logits of each member."""
        return torch.stack([member.logits(images) for member in self.members])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = self.member_probabilities(images).mean(0)  # (N, C)
        # A class no member gives any probability would be log 0; the smallest normal float keeps it finite.
        return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()


def load_ensemble(paths: Sequence[str | Path]) -> tuple[Classifier, dict[str, Any]]:
    """The members' checkpoints as one system (eval mode, CPU), and the data arguments it reads pixels with.

    Raises:
        MnistlabError: In one line, when the members disagree on their classes or their dataset.
    """
    systems = [load_system(path) for path in paths]
    first, (first_system, first_data) = paths[0], systems[0]
    for path, (system, data) in zip(paths[1:], systems[1:], strict=True):
        if list(system.class_names) != list(first_system.class_names):
            raise MnistlabError(
                f"ensemble members disagree on their classes: {path} has {list(system.class_names)}, "
                f"{first} has {list(first_system.class_names)}"
            )
        for key in AGREE:
            if data.get(key, "mnist") != first_data.get(key, "mnist"):
                raise MnistlabError(
                    f"ensemble members disagree on their input: {path} was trained on data.{key}="
                    f"{data.get(key, 'mnist')}, {first} on {first_data.get(key, 'mnist')}"
                )
    members = [ProbabilityNet(s.net, s.head, *input_stats(d)) for s, d in systems]
    system = Classifier(Ensemble(members), class_names=list(first_system.class_names), head="softmax")
    # The ensemble takes [0, 1] pixels (each member standardises its own); the rest of the data is the first's.
    return system.eval(), {**first_data, "normalize": False}


def load_model(paths: Sequence[str | Path], warn: bool = True) -> tuple[Classifier, dict[str, Any]]:
    """One checkpoint (``load_system``) or several as one ensemble (``load_ensemble``).

    A network that returns probabilities (a final ``nn.Softmax``) gets training's warning line here too (unless
    ``warn`` is False: a server's worker loads what its main process loaded and said): evaluate, predict, export and
    serve load through this, and take its outputs as its probabilities (``ProbabilityNet``).
    """
    system, saved = load_system(paths[0]) if len(paths) == 1 else load_ensemble(paths)
    nets = list(system.net.members) if isinstance(system.net, Ensemble) else [system.net]
    for net in nets if warn else []:
        warn_of_probability_outputs(net.net if isinstance(net, ProbabilityNet) else net, trained=True)
    return system, saved
