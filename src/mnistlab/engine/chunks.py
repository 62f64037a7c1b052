"""The chunked engine: one Lightning step trains on a chunk of consecutive batches.

One optimizer step per batch, as per-step, but Lightning's per-step loop work (hooks,
logging bookkeeping, progress) runs once per chunk, which makes a small network train about
as fast as a hand-written loop. Chunk ends are aligned with the global batch count and with
every interval the run counts (``mnistlab.engine.choice.chunk_size``), and
``lightning_private.count_batches`` keeps Lightning's counters in batches, so the run logs,
validates, checkpoints and reports progress at the same batches as per-step.

- ``ChunkedBatches`` groups the training loader's batches into chunks (the data module's side).
- ``ChunkedSteps`` is the system's training step for a chunk (its ``fast_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import Precision

from mnistlab.engine.graph import GraphedStep, graph_blockers
from mnistlab.engine.step import optimizer_step, raw_steps_allowed
from mnistlab.lightning_private import count_batches, count_optimizer_steps, step_counts

if TYPE_CHECKING:
    from mnistlab.data.loaders import TrainBatches

log = logging.getLogger(__package__)  # mnistlab.engine
Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, ...), labels (B,)
StepOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # loss (), predictions (B,), labels (B,)


class Chunk(list[Batch]):
    """Consecutive batches that one Lightning step trains on.

    Lightning moves a batch to the device by calling ``to`` on any object that has one (its
    documented ``transfer_batch_to_device``); this one moves only what is not there yet. As a plain
    list, each of its 100 tensors went through Lightning's generic collection walk: some 0.2 ms a
    chunk on a CPU, about 1.5% of the default run's epoch, for tensors already on the device.
    """

    def to(self, device: torch.device | str, **kwargs: Any) -> Chunk:
        device = torch.device(device)
        if all(x.device == device and y.device == device for x, y in self):
            return self
        return Chunk((x.to(device, **kwargs), y.to(device, **kwargs)) for x, y in self)


class ChunkedBatches:
    """``loader``'s batches in lists that end where Lightning's batch or step count is a multiple of ``size``.

    The last chunk of an epoch ends with it. Its length, position (``state_dict``) and
    ``sampler.set_epoch`` are the loader's, in batches, so Lightning's counts, resume and
    shuffling are those of the per-step run; only the grouping differs.

    The counts are ``trainer``'s own when the iteration starts (``lightning_private.step_counts``): the
    logging interval reads the batches that stepped, step checkpoints ``global_step``. A run resumed
    from a checkpoint of other epoch lengths (another batch size, ``limit_train_batches``) starts an
    epoch at any count, not at ``epoch * len(loader)``. Without a trainer, that product is the count.
    """

    def __init__(self, loader: TrainBatches, size: int, trainer: pl.Trainer | None = None) -> None:
        self.loader, self.size, self.trainer = loader, size, trainer

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def last_batch_size(self) -> int:
        return self.loader.last_batch_size

    @property
    def sampler(self) -> Any:
        return self.loader  # Lightning calls ``loader.sampler.set_epoch(epoch)`` at every epoch start

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def __iter__(self) -> Iterator[Chunk]:
        steps = len(self.loader)
        chunk = Chunk()
        starts: tuple[int, ...] | None = step_counts(self.trainer) if self.trainer is not None else None
        ends: set[int] = set()  # n % size where a chunk ends: where either count, start + n, is a multiple of size
        for n, batch in enumerate(self.loader, start=1):
            chunk.append(batch)
            done = self.loader.served
            if not ends:
                if starts is None:  # epoch e starts at global batch e * steps (every epoch has the same length)
                    starts = (self.loader.epoch * steps + done - 1,)
                ends = {-start % self.size for start in starts}
            # A chunk ends where Lightning would log or save.
            if n % self.size in ends or done == steps:
                yield chunk
                chunk = Chunk()


class ChunkedSteps:
    """The system's training step under the chunked engine (manual optimization).

    ``training_step`` takes ``mnistlab.engine.step.optimizer_step`` once per batch of the
    chunk: on the raw optimizer where ``raw_steps_allowed``, recorded as a CUDA graph where
    ``graph_blockers`` finds nothing, else with Lightning's wrappers. It steps a per-step
    learning-rate schedule after each, counts the chunk's batches and steps in Lightning's
    loop and returns each batch's loss, predictions and labels; the system logs and updates
    its metrics from them as it does for a per-step batch.

    The module is the system: it provides ``net``, ``training_loss``, ``trainer``, ``device``,
    ``optimizers()``, ``lr_schedulers()`` and ``manual_backward``.

    Args:
        cuda_graph: Record the step as a CUDA graph where that is exact (``system.cuda_graph``).
    """

    def __init__(self, cuda_graph: bool = True) -> None:
        self.cuda_graph = cuda_graph
        self.raw_steps = False  # decided in on_train_start
        self._step: Any = None  # (x, y) -> (loss, predictions); set in on_train_start

    def on_train_start(self, module: pl.LightningModule) -> None:
        trainer = module.trainer
        self.raw_steps = raw_steps_allowed(trainer, module)
        wrapped = module.optimizers()
        optimizer = wrapped.optimizer
        net, loss = module.net, module.training_loss
        if self.raw_steps:
            self._step = partial(optimizer_step, net, loss, optimizer)
        else:
            self._step = partial(optimizer_step, net, loss, wrapped, backward=module.manual_backward)
        if module.device.type != "cuda":
            return  # nothing to say: graphs are a GPU matter
        plain = type(trainer.precision_plugin) is Precision
        blockers = graph_blockers(
            module.device, self.raw_steps, plain, module.net, optimizer, module.lr_schedulers(), self.cuda_graph,
            teacher=module.training_loss.step_teacher,  # its forward is part of the recorded step (not at alpha=0)
        )  # fmt: skip
        if blockers:
            log.info("training step: eager, not a CUDA graph: %s", "; ".join(blockers))
        else:
            log.info("training step: recorded once as a CUDA graph and replayed per batch (the same kernels: exact)")
            self._step = GraphedStep(module.net, module.training_loss, optimizer)

    def on_train_end(self) -> None:
        self._step = None  # frees the graph's memory pool

    def training_step(self, module: pl.LightningModule, chunk: list[Batch]) -> list[StepOutput]:
        """One optimizer step per batch of ``chunk``; returns each batch's (loss, predictions, labels)."""
        scheduler = module.lr_schedulers()
        outputs = []
        for x, y in chunk:
            loss, preds = self._step(x, y)
            if scheduler is not None:  # never with a graph, which keeps the rate it recorded
                scheduler.step()
            outputs.append((loss, preds, y))
        if self.raw_steps:  # Lightning's wrapped step counts itself
            count_optimizer_steps(module.trainer, len(chunk))
        count_batches(module.trainer, len(chunk) - 1)
        return outputs
