"""The two heads: how a network's logits become probabilities, and the loss each is trained with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.checkpoint_records import blank_image, class_path, eval_forward
from mnistlab.errors import ConfigError

log = logging.getLogger(__name__)

Head = Literal["softmax", "sigmoid"]
HEADS: tuple[str, ...] = get_args(Head)
KERAS_EPSILON = 1e-7


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """(B, C) logits -> (B, C) probabilities summing to 1.

    ``softmax`` is the usual one. ``sigmoid`` renormalises the C sigmoid outputs to sum 1, as
    Keras' ``predict`` users do, written as ``softmax(-softplus(-z))``: the same numbers, but
    exported to ONNX it stays within 1e-7 of PyTorch, whereas ONNX Runtime's ``Sigmoid`` is
    accurate to ~1e-7 absolute only, which renormalising small outputs blows up to ~5e-5.
    """
    if head == "sigmoid":
        return F.softplus(-logits).neg().softmax(-1)  # log sigmoid(z) = -softplus(-z)
    return logits.softmax(-1)


def keras_sigmoid_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras' sparse categorical cross-entropy applied to a sigmoid output layer.

    Keras clips the probabilities to [eps, 1-eps], takes their log and feeds that to a
    softmax cross-entropy, i.e. it renormalises the clipped outputs to sum 1 and takes
    the NLL of the target class.

    Args:
        logits: (B, C) pre-sigmoid activations.
        target: (B,) class indices.

    Returns:
        The mean loss, a scalar tensor.
    """
    p = logits.sigmoid().clamp(KERAS_EPSILON, 1 - KERAS_EPSILON)  # (B, C)
    return F.cross_entropy(p.log(), target)


def loss_fn(head: str, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss for ``head``: ``(logits (B, C), target (B,)) -> scalar``; picklable (``ddp_spawn``)."""
    if head == "sigmoid":
        if label_smoothing:
            raise ConfigError(
                f"system.label_smoothing={label_smoothing} needs system.head=softmax: the sigmoid head has no smoothing"
            )
        return keras_sigmoid_nll
    return partial(F.cross_entropy, label_smoothing=label_smoothing)


def probability_outputs(net: nn.Module) -> str | None:
    """What the final layer of a network that returns probabilities instead of logits is, or None for logits.

    Softmax outputs lie in [0, 1] and sum to 1 for any input, sigmoid outputs lie in [0, 1]: a network
    ending in ``nn.Softmax`` or ``nn.Sigmoid`` (a Keras ``Dense(10, activation=...)`` ported as it is)
    trains under either head, since both take logits, but slowly and to a worse accuracy, without an error.
    Logits of a freshly built network have both signs. Probed in eval mode on a blank and a white image.

    Returns:
        ``"nn.Softmax"``, ``"nn.Sigmoid"`` or None.
    """
    blank = blank_image(net)
    out = eval_forward(net, torch.cat([blank, torch.ones_like(blank)])).float()  # (2, C)
    if out.ndim != 2 or not bool(((out >= 0) & (out <= 1)).all()):
        return None
    return "nn.Softmax" if torch.allclose(out.sum(-1), torch.ones(2, device=out.device), atol=1e-4) else "nn.Sigmoid"


def network_probabilities(outputs: torch.Tensor, head: str, layer: str | None) -> torch.Tensor:
    """(B, C) outputs of a network -> (B, C) probabilities summing to 1, for predictions.

    Logits go through the head (``probabilities``). The outputs of a network that returns probabilities
    (``layer``: what ``probability_outputs`` found, else None) are its probabilities already: in every row that
    lies in [0, 1] they are taken as they are, normalised to sum 1 (a final ``nn.Sigmoid``'s do not). The head
    would squash them: a softmax of values in [0, 1] lies within a factor e of uniform, confidences of 0.1-0.25
    for 10 classes.
    """
    head_probabilities = probabilities(outputs, head)
    if layer is None:
        return head_probabilities
    total = outputs.sum(-1, keepdim=True)
    own = ((outputs >= 0) & (outputs <= 1)).all(-1, keepdim=True) & (total > 0)  # a row of probabilities
    return torch.where(own, outputs / total.clamp_min(torch.finfo(outputs.dtype).tiny), head_probabilities)


def warn_of_probability_outputs(net: nn.Module, trained: bool = False) -> None:
    """One warning line when ``net`` returns probabilities (``probability_outputs``): it trains, but badly.

    Logged when a fit starts, so that a system fitted by a Trainer of one's own says it as ``scripts/train.py`` does,
    and (``trained``) when a checkpoint of such a network is loaded to evaluate, predict, export or serve, whose
    probabilities are then its outputs (``network_probabilities``).
    """
    if (layer := probability_outputs(net)) is not None:
        summed = " and sum to 1" if layer == "nn.Softmax" else ""
        if trained:
            taken = "as they are" if layer == "nn.Softmax" else "normalised to sum 1"
            log.warning(
                f"model: {class_path(type(net))} returns probabilities (its outputs lie in [0, 1]{summed}), but its "
                "loss took them for logits: it trained slowly and to a worse accuracy; its probabilities here are its "
                f"outputs {taken}, not passed through the head again; drop the network's final {layer} and train it "
                "again"
            )
            return
        log.warning(
            f"model: {class_path(type(net))} returns probabilities (its outputs lie in [0, 1]{summed}), but the loss "
            f"takes logits: it trains, slowly and to a worse accuracy; drop the network's final {layer}"
            + ("" if layer == "nn.Softmax" else " (system.head=sigmoid applies the notebook's sigmoid to logits)")
        )
