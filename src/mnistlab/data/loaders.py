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


class TrainBatches:
    """Shuffled training batches, one ``(images, labels)`` pair per optimizer step.

    Its length is the number of batches per epoch, so Lightning's counts
    (``limit_train_batches``, ``val_check_interval``, the progress bar's total,
    ``estimated_stepping_batches``) are in batches, whatever ``mnistlab.engine`` makes of them.

    The permutation of epoch ``e`` comes from ``seed + e``, so an epoch is the same whether
    or not the run was resumed, and the same under either engine. Under DDP each rank takes
    every ``world_size``-th index of the permutation, padded so that all ranks take the same
    number of steps (as ``DistributedSampler`` does). ``shuffle=False`` keeps the stored
    order (``trainer.overfit_batches``).

    It is stateful (``state_dict``/``load_state_dict``, stored by Lightning in every
    checkpoint), so a run resumed from a mid-epoch checkpoint continues with the next unseen
    batch of the same permutation.

    Args:
        images: (N, 1, 28, 28) float tensor.
        labels: (N,) int64 tensor on the same device.
        batch_size: Samples per optimizer step; the last batch of an epoch may be smaller.
        seed: Base seed of the per-epoch shuffle.
        rank: This process's rank.
        world_size: Number of processes.
        augment: Optional random transform of the images of each batch, drawn from a
            generator seeded by epoch, rank and batch, so a resumed run repeats it.
        shuffle: Reshuffle every epoch (the default) or keep the stored order.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: Augment | None = None,
        shuffle: bool = True,
    ) -> None:
        self.images, self.labels = images, labels
        self.augment, self.shuffle = augment, shuffle
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._skip = 0  # batches of ``epoch`` already trained on (set by load_state_dict)
        self.served = 0  # batches of the running epoch handed to the training loop
        self._exhausted = False

    @property
    def samples_per_rank(self) -> int:
        return -(-len(self.labels) // self.world_size)

    def __len__(self) -> int:
        """Batches (optimizer steps without accumulation) per epoch on this rank."""
        return -(-self.samples_per_rank // self.batch_size)

    @property
    def last_batch_size(self) -> int:
        """Images in the last batch of every epoch on this rank (the others hold ``batch_size``)."""
        return self.samples_per_rank - (len(self) - 1) * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0  # a resume position belongs to the epoch it was saved in
        self.epoch = epoch

    @property
    def sampler(self) -> TrainBatches:
        # Lightning calls ``loader.sampler.set_epoch(epoch)`` at every epoch start; this
        # keeps the shuffle right when an epoch ends early (``trainer.limit_train_batches``).
        return self

    def epoch_indices(self) -> torch.Tensor:
        """This rank's sample order for the current epoch, (samples_per_rank,) int64."""
        if self.shuffle:
            perm = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            perm = torch.arange(len(self.labels))
        padded = self.samples_per_rank * self.world_size
        if padded > len(perm):
            perm = torch.cat([perm, perm[: padded - len(perm)]])
        return perm[self.rank :: self.world_size].to(self.labels.device)

    def batch_generator(self, batch: int) -> torch.Generator:
        """The augmentation's random stream for batch ``batch`` of this epoch."""
        seed = ((self.seed + self.epoch) * self.world_size + self.rank) * 100_003 + batch + 1_000_003
        return torch.Generator(device=self.images.device).manual_seed(seed)

    def state_dict(self) -> dict[str, int]:
        """The running epoch and how many of its batches were handed out.

        Lightning does not pre-fetch from iterables that have a length, so every batch
        handed out has been trained on when a checkpoint is taken after a training step.
        """
        return {"epoch": self.epoch, "batches_done": 0 if self._exhausted else self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self._skip = int(state["batches_done"])

    def __iter__(self) -> Iterator[Batch]:
        order = self.epoch_indices()
        skip, self._skip = self._skip, 0
        self.served, self._exhausted = skip, False
        for i in range(skip, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x, y = self.images[idx], self.labels[idx]  # (B, 1, 28, 28), (B,)
            if self.augment is not None:
                x = self.augment(x, self.batch_generator(i))
            self.served = i + 1
            yield x, y
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
