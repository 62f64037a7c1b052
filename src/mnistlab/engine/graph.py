"""The chunked engine's optimizer step recorded once as a CUDA graph and replayed, where that is exact.

On a GPU, a 784-100-10 step at batch 32 is some 30 kernels of a few microseconds each, and
launching them one by one from Python takes far longer than running them: the GPU mostly
waits. ``GraphedStep`` records the whole of ``mnistlab.engine.step.optimizer_step`` (forward,
loss, backward, optimizer step) as one CUDA graph and replays it for every batch of the
recorded shape: one launch instead of ~30.

A replay runs the recorded kernels with the recorded arguments on the same memory, so the
weights follow the eager step's arithmetic exactly (``tests/test_gpu.py`` compares them bit
for bit). A network with convolutions repeats bit for bit only with ``trainer.deterministic=true``:
cuDNN's default convolution backward differs between two eager runs too. Exactness holds only where
the step does the same thing every time, so ``graph_blockers`` lists what rules it out: randomness
inside the network (a graph would replay other random numbers), layers not known to be free of host
work, a learning rate that changes between steps (a graph keeps the rate it recorded), an optimizer
whose graph-safe mode computes differently, and anything Lightning must wrap around each step. The
run then keeps the eager step and says why in one log line.

Whether a network can be recorded is decided by what it is made of, not by its class: every
leaf module must be one of the standard ``torch.nn`` layers of ``GRAPH_SAFE_LAYERS``, and every
other module (``nn.Sequential``, a user's own network class) may only hold those, with no
parameters or buffers of its own. A container's ``forward`` is taken to route tensors between
its children, as a network's ``forward`` does; one that draws random numbers or reads values
on the host itself (``F.dropout``, ``.item()``) must be run with ``system.cuda_graph=false``.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.engine.step import Loss, optimizer_step

WARMUP_STEPS = 3  # eager steps on a side stream before recording (PyTorch's documented recipe)
# Leaf layers whose forward and backward are the same kernels every step, with no host work (exact types).
GRAPH_SAFE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.LeakyReLU, nn.Tanh,
    nn.Sigmoid, nn.GELU, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.Dropout,
)  # fmt: skip
# Optimizers whose recorded step is the eager one: fused Adam/AdamW ignore ``capturable``, SGD has none.
GRAPH_SAFE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def network_blockers(net: nn.Module, frozen: bool = False, prefix: str = "") -> list[str]:
    """What in ``net`` a recorded step could not replay exactly.

    Args:
        net: The network.
        frozen: ``net`` can never leave eval mode (a distillation teacher): its dropout draws nothing and
            its batch norms only read their running statistics, so neither rules a graph out.
        prefix: Put before each module's name in the reasons (``"teacher."``).
    """
    blockers = []
    for name, m in net.named_modules():
        where = f"{prefix}{name or 'the network'} ({type(m).__name__})"
        own_state = [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]
        if next(m.children(), None) is not None:  # a container: its children are checked in turn
            if own_state:
                blockers.append(f"{where} holds tensors of its own beside its layers")
        elif type(m) not in GRAPH_SAFE_LAYERS:
            blockers.append(f"{where} is not a layer known to be graph-safe")
        elif frozen:
            continue
        elif isinstance(m, nn.Dropout) and m.p > 0:
            blockers.append(f"{where} draws random numbers")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None:
            blockers.append(f"{where} with momentum=None reads its batch count on the host")
    return blockers


def optimizer_blockers(optimizer: torch.optim.Optimizer) -> list[str]:
    """What in ``optimizer`` a recorded step could not replay exactly."""
    kind = type(optimizer)
    if kind not in GRAPH_SAFE_OPTIMIZERS:
        return [f"optimizer {kind.__name__} is not one known to record exactly"]
    blockers = []
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            blockers.append("a tensor learning rate")
        if group.get("differentiable"):
            blockers.append("a differentiable optimizer")
        if kind is not torch.optim.SGD and not group.get("fused"):
            # Unfused Adam records only with capturable=True, which computes the bias correction on the device.
            blockers.append(f"{kind.__name__} without fused=True")
    return sorted(set(blockers))


def graph_blockers(
    device: torch.device, raw_steps: bool, plain_precision: bool, net: nn.Module,
    optimizer: torch.optim.Optimizer, scheduler: object | None, enabled: bool = True,
    teacher: nn.Module | None = None,
) -> list[str]:  # fmt: skip
    """Why the training step cannot be a CUDA graph (empty: it can).

    Args:
        device: The training device.
        raw_steps: The engine calls ``backward`` and ``step`` itself (``mnistlab.engine.step.raw_steps_allowed``).
        plain_precision: 32-bit training, with no autocast or loss scaling.
        net: The network.
        optimizer: The (unwrapped) optimizer.
        scheduler: The learning-rate scheduler, if any.
        enabled: ``system.cuda_graph``.
        teacher: The frozen distillation teacher, whose forward is part of the step (``Teacher``).
    """
    if device.type != "cuda":
        return [f"training on {device.type}"]
    if not enabled:
        return ["system.cuda_graph=false"]
    blockers = []
    if not raw_steps:
        blockers.append("Lightning's per-step wrappers are needed (several devices, a precision plugin or a hook)")
    if not plain_precision:
        blockers.append("a mixed or reduced precision")
    if scheduler is not None:
        blockers.append("a learning-rate scheduler changes the rate every step")
    blockers += optimizer_blockers(optimizer) + network_blockers(net)
    return blockers + ([] if teacher is None else network_blockers(teacher, frozen=True, prefix="teacher."))


class GraphedStep:
    """One optimizer step per call, eager at first, then replayed from a CUDA graph.

    The first ``WARMUP_STEPS`` calls are eager steps on a side stream (they create the
    optimizer state and cuBLAS workspaces, which recording must not). The next call whose
    batch has the shape of the one before records the step and replays it; from then on
    batches of that shape are replays and others (an epoch's smaller last batch) are eager.
    Each call is a real step on its batch: nothing is trained twice or skipped.

    Args:
        net: The network, on the GPU.
        loss: ``(logits (B, C), labels (B,), images) -> scalar`` (``mnistlab.engine.step.Loss``).
        optimizer: The optimizer of ``net``'s parameters (see ``optimizer_blockers``).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: Loss,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.replays = 0
        self._eager_steps = 0
        self._last_shape: torch.Size | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trains on ``x`` (B, ...) and ``y`` (B,); returns the loss and the (B,) predictions, before the step."""
        if self.graph is None:
            if self._eager_steps < WARMUP_STEPS or x.shape != self._last_shape:
                return self._warm_up(x, y)
            self._record(x, y)
        if x.shape != self._x.shape:  # an epoch's smaller last batch
            return self._eager(x, y)
        self._x.copy_(x)
        self._y.copy_(y)
        self.graph.replay()
        self.replays += 1
        return self._loss.clone(), self._preds.clone()  # the next replay overwrites them

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return optimizer_step(self.net, self.loss, self.optimizer, x, y)

    def _warm_up(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self._eager(x, y)
        torch.cuda.current_stream().wait_stream(side)
        self._eager_steps += 1
        self._last_shape = x.shape
        return out

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x, self._y = torch.empty_like(x), torch.empty_like(y)  # the graph's inputs, (B, ...) and (B,)
        groups = self.optimizer.param_groups
        flags = [g.get("capturable") for g in groups]
        # torch refuses to record a step unless capturable=True; for the fused kernel the flag changes
        # nothing else, so it is set for the recording only (checkpoints keep the configured value).
        for g in groups:
            if "capturable" in g:
                g["capturable"] = True
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                # Gradients are None at recording, so backward writes (not adds) into the graph's buffers.
                self._loss, self._preds = self._eager(self._x, self._y)
        finally:
            for g, flag in zip(groups, flags, strict=True):
                if flag is not None:
                    g["capturable"] = flag
        self.graph = graph
