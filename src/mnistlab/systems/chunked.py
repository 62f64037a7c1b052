"""What the chunked engine does inside a chunk so that Lightning's counts stay those of a per-batch run.

A chunk is one Lightning step that takes several optimizer steps (see ``mnistlab.engine``).
Lightning counts one batch per step; ``count_batches`` adds the rest, so that
``batch_idx``, ``trainer.global_step``, the logging interval, ``val_check_interval`` and
the progress bar see the same numbers at a chunk's end as at the same batch of a per-step
run. The counters touched are Lightning's own loop state, which checkpoints save and
resumed runs restore, so a checkpoint written by either engine holds batch counts.

``manual_backward`` and ``LightningOptimizer.step`` cost about 60 us per optimizer step (hook
dispatch, profiler regions, closure wrapping): some 8% of a 784-100-10 step at batch 32 on a CPU.
On one device, with no loss scaling and no callback or module hooked into the backward pass or
the optimizer step, they change nothing, so ``Classifier`` then calls ``loss.backward()`` and
``optimizer.step()`` itself and counts the steps as Lightning would. Everything else (fp16 with
its ``GradScaler``, DDP, XLA, a gradient-logging callback) keeps Lightning's wrappers.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

# Hooks that Lightning's wrappers call around every optimizer step.
PER_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# Precision methods that would be skipped by calling backward/step directly.
PRECISION_STEP_METHODS = ("pre_backward", "backward", "post_backward", "optimizer_step")


def plain_precision(plugin: Precision) -> bool:
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


def raw_step(
    net: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on ``x`` (B, ...) and ``y`` (B,) without Lightning's wrappers.

    Returns:
        The loss and the (B,) predictions, both before the step and detached.
    """
    optimizer.zero_grad(set_to_none=True)
    logits = net(x)  # (B, C)
    loss = loss_fn(logits, y)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach().argmax(-1)


def count_optimizer_steps(trainer: pl.Trainer, steps: int) -> None:
    """Advances ``trainer.global_step`` by ``steps``, as ``LightningOptimizer.step`` does once per call.

    ``global_step`` of a manually optimized module is the completed count of this progress
    tracker; checkpoints save it and resumed runs continue from it.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for _ in range(steps):
        progress.increment_ready()
        progress.increment_completed()


def count_batches(trainer: pl.Trainer, extra: int) -> None:
    """Counts ``extra`` more batches for the Lightning step running now (a chunk of ``extra + 1``).

    Called from ``training_step``, before Lightning logs the step, checks validation and
    runs ``on_train_batch_end``; Lightning adds the chunk's last batch itself afterwards.
    """
    loop = trainer.fit_loop.epoch_loop
    fetcher = trainer.fit_loop._data_fetcher
    fetcher.fetched += extra
    done = fetcher.length is not None and fetcher.fetched >= fetcher.length
    fetcher.done = done
    loop.batch_progress.increment_by(extra, is_last_batch=done)
    loop._batches_that_stepped += extra  # the logging interval and the x-axis of every logger


def align_step_counts(trainer: pl.Trainer) -> None:
    """Sets both of Lightning's optimizer-step counters to the larger one.

    ``trainer.global_step`` reads the automatic-optimization counter under the per-step engine
    and the manual one under the chunked engine; a checkpoint written by one engine holds only
    its own. Aligning them when training starts lets either engine resume the other's checkpoint.
    """
    loop = trainer.fit_loop.epoch_loop
    counters = (loop.automatic_optimization.optim_progress.optimizer.step, loop.manual_optimization.optim_step_progress)
    steps = max(c.total.completed for c in counters)
    for c in counters:
        c.total.ready = c.total.completed = steps
