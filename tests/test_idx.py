"""IDX parsing and checksum checks on tiny hand-made files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import idx_bytes, run_script, write_idx_set

from mnistlab.data import MNISTDataModule
from mnistlab.data.files import load_split
from mnistlab.data.idx import md5, parse_idx, read_bytes
from mnistlab.data.specs import MNIST
from mnistlab.errors import ConfigError, DataError


@pytest.mark.parametrize("gz", [True, False])
def test_parses_gzipped_and_raw(tmp_path: Path, gz: bool) -> None:
    root = write_idx_set(tmp_path, n_train=30, n_test=10, gz=gz)
    images, labels = load_split(root, MNIST, train=True, verify=False)
    assert images.shape == (30, 28, 28) and images.dtype.is_floating_point is False
    assert labels.tolist() == [i % 10 for i in range(30)]
    raw = np.random.default_rng(0).integers(0, 256, (30, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(images.numpy(), raw)


def test_checksum_mismatch_names_file_and_both_sums(tiny_data: Path) -> None:
    with pytest.raises(DataError) as err:
        load_split(tiny_data, MNIST, train=False)
    found = md5(read_bytes(tiny_data / "t10k-images-idx3-ubyte.gz"))
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in message
    assert MNIST.split_files(train=False)[0].md5 in message and found in message
    # Before: no way forward for hand-made files; now the one setting that reads them.
    assert message.endswith(
        "; if these are files of your own, not the published t10k-images-idx3-ubyte, add data.verify=false"
    )


def test_truncated_file(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-100]
    with pytest.raises(DataError, match=r"x\.idx: truncated IDX file \(3836 bytes, header \(5, 28, 28\) needs 3936\)"):
        parse_idx(data, "x.idx", "images")


def test_wrong_magic_number() -> None:
    with pytest.raises(DataError, match="wrong magic number 0x00000901"):
        parse_idx(bytes([0, 0, 9, 1, 0, 0, 0, 0]), "y.idx", "labels")


def test_unreadable_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "t.gz"
    bad.write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_bytes(bad)


def test_label_count_disagrees(tmp_path: Path) -> None:
    root = write_idx_set(tmp_path, n_train=30)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(29, np.uint8))))
    with pytest.raises(DataError, match="29 labels but 30 images"):
        load_split(root, MNIST, train=True, verify=False)


def test_real_files_match_published_facts(mnist_dir: Path) -> None:
    images, labels = load_split(mnist_dir, MNIST, train=True)
    assert images.shape == (60_000, 28, 28)
    assert labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    x = images.float() / 255
    assert round(x.mean().item(), 4) == 0.1307 and round(x.std().item(), 4) == 0.3081
    assert labels[2] == 4
    _, test_labels = load_split(mnist_dir, MNIST, train=False)
    assert test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert test_labels[998] == 8


@pytest.mark.parametrize("damage", ["cut-short", "empty"])
def test_a_hand_made_test_split_is_read_before_the_fit(tmp_path: Path, damage: str) -> None:
    """Before, under data.verify=false: a whole fit, checkpoints saved, then the error (an IndexError traceback for a
    test split of no images); the test split is now read as the fit starts, before any training step."""
    root = write_idx_set(tmp_path / "tiny")
    test_images = root / "t10k-images-idx3-ubyte.gz"
    if damage == "cut-short":
        test_images.write_bytes(test_images.read_bytes()[:-40])
    else:
        (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(0, np.uint8))))
        test_images.write_bytes(gzip.compress(idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    result = run_script("train.py", f"data.root={root}", "data.verify=false", "data.val_size=10",
                        "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {test_images}: "), last
    assert "holds no images" in last if damage == "empty" else "gzip" in last
    assert not (tmp_path / "run" / "checkpoints").exists()  # no training step


def test_a_validation_split_larger_than_a_hand_made_set_names_its_size(tmp_path: Path) -> None:
    """Before: "data.val_size=5000 is out of range: must be an integer in 0-59" for the default the user never set."""
    root = write_idx_set(tmp_path / "tiny")  # 60 training images
    with pytest.raises(ConfigError) as refused:
        MNISTDataModule(str(root), download=False, verify=False).setup("fit")
    assert str(refused.value) == (
        f"data.val_size=5000 is out of range: {root} holds 60 training images, so it must be an integer in 0-59"
    )
