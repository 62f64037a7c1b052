"""The optimizer step of the chunked engine: one function, eager or recorded as a CUDA graph.

``optimizer_step`` is every optimizer step the chunked engine takes. It runs either on the
raw optimizer with ``loss.backward()``, or on Lightning's wrapped optimizer with
``manual_backward``, whose hooks, precision plugin and strategy then run around it as
Lightning documents. ``manual_backward`` and ``LightningOptimizer.step`` cost about 60 us per
step (hook dispatch, profiler regions, closure wrapping): some 8% of a 784-100-10 step at
batch 32 on a CPU. On one device, with no loss scaling and no callback or module hooked into
the backward pass or the optimizer step, they change nothing, so ``raw_steps_allowed`` then
lets the engine take the raw form. ``GraphedStep`` (``mnistlab.engine.graph``) records
exactly this function.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

# (logits (B, C), labels (B,), images (B, ...)) -> scalar: the images for a distillation teacher.
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Hooks that Lightning's wrappers call around every optimizer step.
PER_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# Precision methods that would be skipped by calling backward/step directly.
PRECISION_STEP_METHODS = ("pre_backward", "backward", "post_backward", "optimizer_step")


def optimizer_step(
    net: torch.nn.Module,
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer | LightningOptimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on ``x`` (B, ...) and ``y`` (B,).

    Args:
        net: The network.
        loss_fn: The training loss (``Classifier.training_loss``).
        optimizer: The raw optimizer, or Lightning's wrapper of it (``LightningModule.optimizers()``).
        x: Images.
        y: Labels.
        backward: ``loss.backward`` by default; ``LightningModule.manual_backward`` with Lightning's wrapper.

    Returns:
        The loss and the (B,) predictions, both before the step and detached.
    """
    optimizer.zero_grad(set_to_none=True)
    logits = net(x)  # (B, C)
    loss = loss_fn(logits, y, x)
    backward(loss)
    optimizer.step()
    return loss.detach(), logits.detach().argmax(-1)


def plain_precision(plugin: Precision) -> bool:
    """True when the precision plugin does nothing around backward and the optimizer step."""
    if type(plugin) is MixedPrecision:
        return plugin.scaler is None  # bf16-mixed: autocast only, which wraps the whole training_step
    return not any(is_overridden(m, plugin, Precision) for m in PRECISION_STEP_METHODS)


def raw_steps_allowed(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """True when bypassing ``manual_backward`` and ``LightningOptimizer.step`` changes no behaviour."""
    if type(trainer.strategy) is not SingleDeviceStrategy or not plain_precision(trainer.precision_plugin):
        return False
    for hook in PER_STEP_HOOKS:
        if is_overridden(hook, module, pl.LightningModule):
            return False
        if any(is_overridden(hook, cb, pl.Callback) for cb in trainer.callbacks):
            return False
    return True
