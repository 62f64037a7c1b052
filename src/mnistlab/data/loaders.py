"""Batch iterables over tensors that already sit on the training device.

They replace ``DataLoader`` + per-sample collate: a batch is one index gather, with no
Python work per sample and no host-to-device copy per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 1, 28, 28) float, labels (B,) int64
# (images (N, 1, 28, 28), generator) -> augmented images of the same shape, e.g. ``RandomAffine``.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TrainChunks:
    """Shuffled training batches, grouped into chunks of ``steps_per_chunk`` batches.

    Each item is a list of up to ``steps_per_chunk`` batches; the system takes one
    optimizer step per batch. Grouping amortises Lightning's per-step overhead over many
    optimizer steps, which is what lets a tiny MLP train as fast as a hand-written loop.

    The permutation of epoch ``e`` comes from ``seed + e``, so an epoch is the same
    whether or not the run was resumed. Under DDP each rank takes every
    ``world_size``-th index of the permutation, padded so that all ranks take the same
    number of steps (as ``DistributedSampler`` does).

    It is stateful (``state_dict``/``load_state_dict``, which Lightning stores in every
    checkpoint), so a run resumed from a mid-epoch checkpoint continues with the next
    unseen chunk of the same permutation instead of restarting the epoch.

    Args:
        images: (N, 1, 28, 28) float tensor.
        labels: (N,) int64 tensor on the same device.
        batch_size: Samples per optimizer step; the last batch of an epoch may be smaller.
        steps_per_chunk: Batches per item.
        seed: Base seed of the per-epoch shuffle.
        rank: This process's rank.
        world_size: Number of processes.
        augment: Optional random transform of each chunk's images (one call per chunk), drawn
            from a generator seeded per epoch and chunk, so that a resumed run repeats it.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        steps_per_chunk: int = 50,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: Augment | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.augment = augment
        self.batch_size, self.steps_per_chunk = batch_size, steps_per_chunk
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._skip = 0  # chunks of ``epoch`` already trained on (set by load_state_dict)
        self._served = 0  # chunks of the running epoch handed to the training loop
        self._exhausted = False

    @property
    def samples_per_rank(self) -> int:
        return -(-len(self.labels) // self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.samples_per_rank // self.batch_size)

    def __len__(self) -> int:
        return -(-self.steps_per_epoch // self.steps_per_chunk)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0  # a resume position belongs to the epoch it was saved in
        self.epoch = epoch

    @property
    def sampler(self) -> TrainChunks:
        # Lightning calls ``loader.sampler.set_epoch(epoch)`` at every epoch start; this
        # keeps the shuffle right when an epoch ends early (``trainer.limit_train_batches``).
        return self

    def epoch_indices(self) -> torch.Tensor:
        """This rank's sample order for the current epoch, (samples_per_rank,) int64."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.labels), generator=g)
        padded = self.samples_per_rank * self.world_size
        if padded > len(perm):
            perm = torch.cat([perm, perm[: padded - len(perm)]])
        return perm[self.rank :: self.world_size].to(self.labels.device)

    def chunk_generator(self, index: int) -> torch.Generator:
        """The augmentation's random stream for chunk ``index`` of this epoch and rank.

        One seed per chunk, so a run resumed mid-epoch draws the same transforms as an
        uninterrupted one; offset from the shuffle's seeds.
        """
        seed = ((self.seed + self.epoch) * self.world_size + self.rank) * 100_003 + index + 1_000_003
        return torch.Generator(device=self.images.device).manual_seed(seed)

    def state_dict(self) -> dict[str, int]:
        """The running epoch and how many of its chunks were handed out.

        Lightning does not pre-fetch from iterables that have a length, so every chunk
        handed out has been trained on when a checkpoint is taken after a training step.
        """
        return {"epoch": self.epoch, "chunks_done": 0 if self._exhausted else self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._skip = int(state["epoch"]), int(state["chunks_done"])

    def __iter__(self) -> Iterator[list[Batch]]:
        order = self.epoch_indices()
        chunk = self.batch_size * self.steps_per_chunk
        skip, self._skip = self._skip, 0
        self._served, self._exhausted = skip, False
        for start in range(skip * chunk, len(order), chunk):
            idx = order[start : start + chunk]
            x, y = self.images[idx], self.labels[idx]  # (C, 1, 28, 28), (C,) with C <= chunk
            if self.augment is not None:
                x = self.augment(x, self.chunk_generator(self._served))
            self._served += 1
            yield list(zip(x.split(self.batch_size), y.split(self.batch_size), strict=True))
        self.epoch += 1
        self._exhausted = True


class EvalBatches:
    """Sequential, unshuffled batches for validation, test and predict; never drops a sample.

    Under DDP, rank ``r`` takes the ``r``-th contiguous shard, so every sample is seen by
    exactly one rank and metric sums count it once.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000, rank: int = 0, world_size: int = 1
    ) -> None:
        shard = -(-len(labels) // world_size)
        self.images = images[rank * shard : (rank + 1) * shard]
        self.labels = labels[rank * shard : (rank + 1) * shard]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return zip(self.images.split(self.batch_size), self.labels.split(self.batch_size), strict=True)
