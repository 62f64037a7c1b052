"""On-device batch augmentation: the transform itself and its place in the training loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistlab.data import MNISTDataModule
from mnistlab.data.augment import RandomAffine
from mnistlab.data.loaders import TrainBatches
from mnistlab.engine import Engine
from mnistlab.engine.chunks import ChunkedBatches


def blob_batch(n: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a centred bar on a black background
    return x


def test_zero_ranges_are_the_identity_and_skipped(tiny_data: Path) -> None:
    x = torch.rand(4, 1, 28, 28)
    identity = RandomAffine(0.0, 0.0, 0.0)
    torch.testing.assert_close(identity(x), x)
    assert not identity and RandomAffine(degrees=1.0)
    dm = MNISTDataModule(root=str(tiny_data), download=False, verify=False, val_size=12, augment=identity)
    assert dm.augment is None


def test_each_image_gets_its_own_seeded_transform() -> None:
    x = blob_batch()
    augment = RandomAffine(degrees=5.0, translate=0.05, scale=0.05)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert len(torch.unique(a.flatten(1), dim=0)) == len(x)  # not one transform for the batch
    # Light: the bar moves by at most ~1.4 px, keeps its mass, and the corners stay background.
    assert (a[:, :, :3, :3] == 0).all() and (a[:, :, -3:, -3:] == 0).all()
    torch.testing.assert_close(a.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.15, atol=0)


def test_a_pure_shift_moves_the_image() -> None:
    x = blob_batch(1)
    shifted = RandomAffine(0.0, 0.1, 0.0)
    theta = shifted.theta(1, x.device)
    assert theta[0, :, :2].equal(torch.eye(2)) and theta[0, :, 2].abs().max() <= 0.2


def test_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="scale < 1"):
        RandomAffine(scale=1.5)
    # A shift past the image's side leaves only border (torchvision refuses it too); past a half-turn nothing is new.
    for bad in (dict(translate=2.0), dict(degrees=400.0), dict(degrees=-1.0)):
        with pytest.raises(ValueError, match=r"^augment needs 0 <= degrees <= 180, 0 <= translate <= 1"):
            RandomAffine(**bad)
    assert RandomAffine(degrees=180.0, translate=1.0)  # the edges themselves are allowed


def test_datamodule_augments_training_chunks_only(tiny_data: Path) -> None:
    kwargs = dict(root=str(tiny_data), download=False, verify=False, val_size=12, batch_size=8)
    engine = Engine(2, "chunked")  # the chunked engine
    plain = MNISTDataModule(**kwargs, engine=engine)
    augmented = MNISTDataModule(**kwargs, augment=RandomAffine(degrees=5.0), engine=engine)
    for dm in (plain, augmented):
        dm.setup()
    assert "augment" not in augmented.hparams  # checkpoints keep plain values only
    x_plain, y_plain = next(iter(plain.train_dataloader()))[0]
    x_aug, y_aug = next(iter(augmented.train_dataloader()))[0]
    assert y_plain.equal(y_aug) and not torch.allclose(x_plain, x_aug)  # same samples, new pixels
    # An epoch replays identically (a resumed run sees the same augmented images).
    again = augmented.train_dataloader()
    torch.testing.assert_close(next(iter(again))[0][0], x_aug)
    assert torch.equal(augmented.val_set[0], plain.val_set[0])
    assert torch.equal(next(iter(augmented.test_dataloader()))[0], next(iter(plain.test_dataloader()))[0])


def test_mid_epoch_resume_repeats_the_augmented_chunks() -> None:
    images, labels = torch.rand(40, 1, 28, 28), torch.arange(40)

    def make() -> ChunkedBatches:
        return ChunkedBatches(TrainBatches(images, labels, batch_size=4, seed=3, augment=RandomAffine()), 2)

    full = make()
    full.sampler.set_epoch(1)
    uninterrupted = list(full)[2:]  # epoch 1 from its third chunk on
    resumed = make()
    resumed.load_state_dict({"epoch": 1, "batches_done": 4})
    for (a, _), (b, _) in zip([c[0] for c in uninterrupted], [c[0] for c in resumed], strict=True):
        torch.testing.assert_close(a, b)
