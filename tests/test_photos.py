"""Photos of digits (coloured paper, a lighting gradient, noise, JPEG) through predict's MNIST-style preprocessing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TrainedRun
from PIL import Image

from mnistlab.checkpoints import load_system
from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST
from mnistlab.evaluation.images import read_gray
from mnistlab.evaluation.preprocess import NO_DIGIT, mnist_style

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

PAPERS = [(236, 222, 190), (250, 246, 235), (214, 226, 240), (245, 225, 200), (200, 200, 195)]  # warm, white, blue...
INKS = [(28, 40, 150), (20, 20, 25), (60, 60, 70), (140, 30, 30)]  # blue pen, black, pencil grey, red


def photo(digit: np.ndarray | None, rng: np.random.Generator, texture: bool = False) -> np.ndarray:
    """A (240, 200) RGB "photo": ``digit`` (28x28 uint8, white on black) as ink on paper, or no digit.

    Coloured paper, a lighting gradient in a random direction (from 55% to 110% brightness), the
    digit enlarged 4-6x at a random place, Gaussian noise, and a JPEG round trip.
    """
    h, w = 240, 200
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float64) / 255
    image = np.ones((h, w, 3)) * paper
    if texture:  # a woven or grainy surface instead of a digit
        yy, xx = np.mgrid[0:h, 0:w]
        image *= (0.8 + 0.2 * np.sin(xx / rng.uniform(1.5, 4)) * np.sin(yy / rng.uniform(1.5, 4)))[..., None]
        image *= 1 - 0.25 * rng.random((h, w, 1))
    if digit is not None:
        scale = int(rng.integers(4, 7))
        big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)) / 255
        top, left = rng.integers(0, h - big.shape[0] + 1), rng.integers(0, w - big.shape[1] + 1)
        ink = np.array(INKS[rng.integers(len(INKS))], np.float64) / 255
        alpha = big[..., None] * rng.uniform(0.8, 1.0)  # (s, s, 1) ink coverage
        region = image[top : top + big.shape[0], left : left + big.shape[1]]
        image[top : top + big.shape[0], left : left + big.shape[1]] = region * (1 - alpha) + ink * alpha
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    light = 0.55 + 0.55 * (ramp - ramp.min()) / (ramp.max() - ramp.min())  # 0.55 .. 1.10
    image = image * light[..., None] + rng.normal(0, 0.03, (h, w, 3))
    buffer = io.BytesIO()
    Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=75)
    return np.asarray(Image.open(buffer).convert("RGB"))


def gray_of(rgb: np.ndarray, tmp_path: Path, name: str) -> np.ndarray:
    Image.fromarray(rgb).save(tmp_path / name)
    return read_gray(tmp_path / name)  # what predict.py reads


@pytest.fixture(scope="module")
def test_digits(mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split(mnist_dir, MNIST, train=False)
    return images[:100], labels[:100]


def test_photos_predict_like_the_clean_digits(
    notebook_hidden_run: TrainedRun, test_digits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    system, _ = load_system(notebook_hidden_run.checkpoint)
    images, _ = test_digits
    rng = np.random.default_rng(0)
    styled, warnings = [], []
    for i, digit in enumerate(images.numpy()):
        x, warning = mnist_style(gray_of(photo(digit, rng), tmp_path, f"{i}.jpg"))
        styled.append(x)
        warnings.append(warning)
    with torch.no_grad():
        clean = system(images.unsqueeze(1).float() / 255).argmax(1)
        photos = system(torch.from_numpy(np.stack(styled)).unsqueeze(1)).argmax(1)
    agree = float((clean == photos).float().mean())
    assert agree >= 0.90, f"only {agree:.0%} of the photos predicted as their clean digits"
    assert sum(w is not None for w in warnings) <= 2, warnings


def test_pictures_without_a_digit_get_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(10):
        x, warning = mnist_style(gray_of(photo(None, rng, texture=i % 2 == 1), tmp_path, f"{i}.jpg"))
        assert warning is not None and warning.startswith(NO_DIGIT), (i, warning)
        assert x.shape == (28, 28)
    for blank in (np.ones((50, 40)), np.zeros((28, 28)), np.full((30, 30), 0.6)):
        x, warning = mnist_style(blank)
        assert warning == f"{NO_DIGIT} (the image is blank)" and not x.any()
    # A lone dot on the page: before, it was fitted into 20x20 and the model, given a solid block, was answered
    # without a warning (a served request got a prediction instead of a 400).
    for shape, dot in (((28, 28), np.s_[14, 14]), ((300, 400), np.s_[100:103, 200:203])):
        page = np.full(shape, 0.95)
        page[dot] = 0.05
        x, warning = mnist_style(page)
        assert warning is not None and warning.startswith(f"{NO_DIGIT} (a dot "), warning


def test_a_number_of_several_digits_gets_a_warning_and_single_digits_do_not(mnist_dir: Path, tmp_path: Path) -> None:
    """Before: the digits of "37" were fitted together into one 20x20 box and read as one digit, without a word."""
    images, _ = load_split(mnist_dir, MNIST, train=False)
    digits = images.numpy()
    rng = np.random.default_rng(2)
    for k in range(20):
        a, b, c = rng.integers(0, len(digits), 3)
        parts = [digits[i][:, 4:24] for i in (a, b, c)[: 2 + k % 2]]  # 2 or 3 digits, 2 pixels apart
        number = np.concatenate([np.pad(p, ((0, 0), (0, 2))) for p in parts], axis=1)
        page = 255 - np.kron(number, np.ones((4, 4), np.uint8))  # dark on white paper, enlarged
        Image.fromarray(np.pad(page, 30, constant_values=255)).save(tmp_path / f"{k}.jpg", quality=85)
        _, warning = mnist_style(read_gray(tmp_path / f"{k}.jpg"))
        assert (
            warning == f"{len(parts)} digits side by side (a picture holds one digit: crop each into a file of its own)"
        )
    # None of the first 2,000 MNIST test digits (of all 10,000: one broken 1) is taken for several.
    assert [i for i, d in enumerate(digits[:2000]) if mnist_style(d / 255)[1] is not None] == []


def test_an_mnist_image_passes_unchanged(test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = test_digits
    for digit in images[:20].numpy():
        x, warning = mnist_style(digit / 255)
        assert warning is None
        assert np.corrcoef(x.ravel(), digit.ravel() / 255)[0, 1] > 0.99


def test_npy_arrays_that_are_no_image_are_refused_by_what_is_wrong(tmp_path: Path) -> None:
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.images import read_gray

    mask = np.zeros((28, 28), dtype=bool)
    mask[8:20, 12:16] = True
    np.save(tmp_path / "mask.npy", mask)
    assert np.array_equal(read_gray(tmp_path / "mask.npy"), mask.astype(np.float64))  # before: "not 2-D numeric"
    cases = {
        "complex.npy": (np.ones((28, 28), dtype=np.complex64), "a .npy image must hold real numbers, not complex64"),
        "text.npy": (np.full((28, 28), "a"), "a .npy image must hold real numbers, not <U1"),
        "nan.npy": (np.full((28, 28), np.nan), "the array holds NaN or infinite values"),  # before: a prediction
        "flat.npy": (np.zeros(784), "a .npy image must be a 2-D array, got shape (784,)"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(MnistlabError) as raised:
            read_gray(tmp_path / name)
        assert str(raised.value) == f"{tmp_path / name}: {message}"
