"""scripts/predict.py on test images and on files, MNIST-style preprocessing, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedRun, run_script
from PIL import Image

from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.images import FORMATS, decode_image, image_files, read_gray
from mnistlab.evaluation.preprocess import NO_DIGIT, mnist_style

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them


@pytest.fixture(scope="module")
def digit_998(mnist_dir: Path) -> np.ndarray:
    images, labels = load_split(mnist_dir, MNIST, train=False)
    assert labels[998] == 8
    return images[998].numpy()  # (28, 28) uint8, white on black


def predict_json(ckpt: Path, *overrides: str) -> list[dict]:
    result = run_script("predict.py", f"ckpt_path={ckpt}", "format=json", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_index_998_is_an_eight(notebook_hidden_run: TrainedRun) -> None:
    result = run_script("predict.py", f"ckpt_path={notebook_hidden_run.checkpoint}", "index=998")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "test image 998 (label 8)"
    assert lines[1].startswith("┌") and sum("█" in line for line in lines[2:16]) >= 6  # the picture
    assert lines[-1].startswith("prediction 8  confidence ")
    assert "(sigmoid outputs normalised to sum 1)" in result.stdout
    [record] = predict_json(notebook_hidden_run.checkpoint, "index=998")
    assert (record["index"], record["label"], record["prediction"]) == (998, 8, 8)
    assert abs(sum(record["probabilities"]) - 1) < 1e-5 and record["confidence"] == max(record["probabilities"])


def test_files_in_both_polarities_predict_like_the_index(
    notebook_hidden_run: TrainedRun, digit_998: np.ndarray, tmp_path: Path
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    Image.fromarray(digit_998).save(folder / "a_mnist.png")
    Image.fromarray(255 - digit_998).save(folder / "b_inverted.png")  # dark digit on white paper
    Image.fromarray(255 - digit_998).convert("RGB").save(folder / "c_inverted.jpg", quality=95)
    np.save(folder / "d_array.npy", digit_998.astype(np.float32) / 255)
    [by_index] = predict_json(notebook_hidden_run.checkpoint, "index=998")
    by_file = predict_json(notebook_hidden_run.checkpoint, f"image={folder}")
    assert [Path(r["file"]).name for r in by_file] == ["a_mnist.png", "b_inverted.png", "c_inverted.jpg", "d_array.npy"]
    assert [r["prediction"] for r in by_file] == [by_index["prediction"]] * 4
    # The preprocessing leaves an MNIST image as it is, so the probabilities agree too.
    assert np.allclose(by_file[0]["probabilities"], by_index["probabilities"], atol=1e-4)
    table = run_script("predict.py", f"ckpt_path={notebook_hidden_run.checkpoint}", f"image={folder}/*.png")
    assert table.returncode == 0, table.stderr[-3000:]
    rows = table.stdout.splitlines()
    assert rows[0].split()[:3] == ["input", "pred", "conf"] and len(rows) == 1 + 2 + 1  # header, 2 files, note
    # One unreadable file among them is skipped with a warning; before, it failed the whole folder.
    (folder / "e_notes.png").write_text("not a picture")
    ckpt = f"ckpt_path={notebook_hidden_run.checkpoint}"
    with_notes = run_script("predict.py", ckpt, f"image={folder}", "format=json")
    assert with_notes.returncode == 0, with_notes.stderr[-3000:]
    assert [Path(r["file"]).name for r in json.loads(with_notes.stdout)] == [Path(r["file"]).name for r in by_file]
    assert with_notes.stderr.strip().splitlines()[-1] == (
        f"warning: skipped {folder}/e_notes.png: not an image (expected {FORMATS})"
    )
    # A folder's files of other kinds are named, not silently passed over; a list of files is predicted too.
    (folder / "f_readme.txt").write_text("about these digits")
    listed = run_script("predict.py", ckpt, f"image=[{folder}/a_mnist.png,{folder}]", "format=json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    names = [Path(r["file"]).name for r in json.loads(listed.stdout)]
    assert names == ["a_mnist.png", *(Path(r["file"]).name for r in by_file)]
    assert f"warning: skipped 1 file(s) of {folder} that are none of {FORMATS} (f_readme.txt)" in listed.stderr


def test_mnist_style_undoes_scale_shift_and_polarity(digit_998: np.ndarray, tmp_path: Path) -> None:
    # A photo-like version: 6x larger, off-centre on a big light-grey page, dark grey ink.
    big = np.kron(digit_998 / 255, np.ones((6, 6)))  # (168, 168)
    page = np.full((400, 300), 0.9)
    page[30:198, 100:268] -= 0.7 * big
    Image.fromarray((page * 255).astype(np.uint8)).save(tmp_path / "page.png")
    restored, warning = mnist_style(read_gray(tmp_path / "page.png"))
    original = digit_998 / 255
    assert warning is None and restored.shape == (28, 28) and restored.max() == pytest.approx(1, abs=0.01)
    assert np.corrcoef(restored.ravel(), original.ravel())[0, 1] > 0.95
    blank, warning = mnist_style(np.ones((50, 40)))
    assert warning == f"{NO_DIGIT} (the image is blank)" and not blank.any()


def test_every_format_pillow_opens_is_read_and_a_non_image_is_refused_naming_them(
    digit_998: np.ndarray, tmp_path: Path
) -> None:
    """Before: a folder's GIF, BMP, TIFF and WebP files were skipped as "no PNG, JPEG or .npy" though the reader
    takes them as single files, and every refusal (the server's too) said "expected PNG or JPEG"."""
    import asyncio

    from mnistlab.serving.checks import BadRequest, check_body

    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ("a.png", "b.gif", "c.bmp", "d.tiff", "e.webp"):
        Image.fromarray(255 - digit_998).save(folder / name, **({"lossless": True} if name.endswith("webp") else {}))
    (folder / "notes.txt").write_text("about these digits")
    skipped: list[str] = []
    files = image_files(folder, skipped)
    assert [p.name for p in files] == ["a.png", "b.gif", "c.bmp", "d.tiff", "e.webp"]
    every = "PNG, JPEG, GIF, BMP, TIFF, WebP or another format Pillow opens"  # the messages' words, written out
    assert skipped == [f"1 file(s) of {folder} that are none of {every}, or .npy (notes.txt)"]
    for path in files:
        assert np.allclose(read_gray(path), 1 - digit_998 / 255, rtol=0, atol=1e-12), path.name
        with path.open("rb") as stream:  # a served request's bytes
            assert np.array_equal(decode_image(stream), read_gray(path)), path.name
    (tmp_path / "notes.gif").write_text("not a picture")
    with pytest.raises(MnistlabError) as refused:
        read_gray(tmp_path / "notes.gif")
    assert str(refused.value) == f"{tmp_path}/notes.gif: not an image (expected {every}, or .npy)"
    with pytest.raises(MnistlabError) as refused, (tmp_path / "notes.gif").open("rb") as stream:
        decode_image(stream)
    assert str(refused.value) == f"not an image (expected {every}, or .npy)"  # the server takes arrays too
    with pytest.raises(BadRequest) as refused:
        asyncio.run(check_body({}, b'{"picture": 1}', "application/json"))
    assert str(refused.value) == 'expected a JSON object {"image": "<base64 image: ' + every + ', or .npy>"}'


def test_a_16_bit_png_reads_like_its_8_bit_copy(digit_998: np.ndarray, tmp_path: Path) -> None:
    # Before: Pillow's convert("L") clipped 16-bit values at 255, so the dark digit on white paper was a blank
    # page and the white digit on black a solid block, each predicted without a warning (served alike).
    for name, pixels in (("mnist", digit_998), ("paper", 255 - digit_998)):
        Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / f"{name}16.png")  # full 16-bit scale
        assert Image.open(tmp_path / f"{name}16.png").mode == "I;16"
        gray = read_gray(tmp_path / f"{name}16.png")
        assert np.allclose(gray, pixels / 255, atol=1e-12)
        with (tmp_path / f"{name}16.png").open("rb") as stream:  # a served request's bytes
            assert np.array_equal(decode_image(stream), gray)
        image, warning = mnist_style(gray)
        assert warning is None and np.corrcoef(image.ravel(), digit_998.ravel())[0, 1] > 0.95
        np.save(tmp_path / f"{name}16.npy", pixels.astype(np.uint16) * 257)  # the same as an array: divided by 255
        assert np.allclose(read_gray(tmp_path / f"{name}16.npy"), pixels / 255, atol=1e-12)


def test_32_bit_integer_and_float_tiffs_read_like_their_8_bit_copy(digit_998: np.ndarray, tmp_path: Path) -> None:
    # Before: a 32-bit integer TIFF of 0-255 was divided by 65535 and a float one of [0, 1] clipped to 0 and 1 by
    # convert("L"): both read as a blank page ("no digit-like ink found").
    for mode, pixels in (("I", digit_998.astype(np.int32)), ("F", digit_998.astype(np.float32) / 255)):
        Image.fromarray(pixels).save(tmp_path / f"{mode}.tiff")
        assert Image.open(tmp_path / f"{mode}.tiff").mode == mode
        assert np.allclose(read_gray(tmp_path / f"{mode}.tiff"), digit_998 / 255, atol=1e-6)
        with (tmp_path / f"{mode}.tiff").open("rb") as stream:  # a served request's bytes
            assert np.allclose(decode_image(stream), digit_998 / 255, atol=1e-6)


def test_a_photo_is_turned_upright_as_its_exif_orientation_says(digit_998: np.ndarray, tmp_path: Path) -> None:
    # Before: a phone's photo, stored as the sensor lay with EXIF orientation 6 or 8 (every viewer shows it upright),
    # was read as stored, so the model got the digit on its side, and predicted it, without a word (served alike).
    page = np.full((60, 40), 230, np.uint8)  # a dark digit on a portrait page
    page[10:38, 6:34] = 255 - digit_998
    upright = tmp_path / "upright.png"
    Image.fromarray(page).save(upright)
    for orientation, stored in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = orientation  # the EXIF Orientation tag
        tagged = tmp_path / f"phone_{orientation}.png"
        Image.fromarray(page).transpose(stored).save(tagged, exif=exif.tobytes())
        assert np.array_equal(read_gray(tagged), read_gray(upright))
        with tagged.open("rb") as stream:  # a served request's bytes
            assert np.array_equal(decode_image(stream), read_gray(upright))


def one_line_error(*overrides: str) -> str:
    result = run_script("predict.py", *overrides)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def test_errors_are_one_line(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    ckpt = f"ckpt_path={notebook_hidden_run.checkpoint}"
    assert one_line_error(f"ckpt_path={tmp_path}/missing.ckpt", "index=1") == (
        f"error: checkpoint not found: {tmp_path}/missing.ckpt"
    )
    (tmp_path / "notes.png").write_text("not a picture")
    assert one_line_error(ckpt, f"image={tmp_path}/notes.png") == (
        f"error: {tmp_path}/notes.png: not an image (expected {FORMATS})"
    )
    (tmp_path / "empty").mkdir()
    assert one_line_error(ckpt, f"image={tmp_path}/empty") == (
        f"error: {tmp_path}/empty: the folder holds no images ({FORMATS})"
    )
    (tmp_path / "bad").mkdir()  # before: "none of its 2 files is a readable image", and not why
    (tmp_path / "bad" / "a.png").write_text("not a picture")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    assert one_line_error(ckpt, f"image={tmp_path}/bad") == (
        f"error: image={tmp_path}/bad: none of its 2 files is a readable image: {tmp_path}/bad/a.png: not an image "
        f"(expected {FORMATS}) (and 1 more)"
    )
    assert one_line_error(ckpt, "index=10000") == "error: index=10000 is outside the test set (0-9999)"
    assert one_line_error(ckpt, "index=abc") == (
        "error: index='abc' is not a test-image number (an integer, or a list: index=[1,2])"
    )


def test_a_picture_without_a_digit_is_flagged(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    Image.fromarray(np.full((60, 50), 230, np.uint8)).save(tmp_path / "blank.png")
    [record] = predict_json(notebook_hidden_run.checkpoint, f"image={tmp_path}/blank.png")
    assert record["warning"] == f"{NO_DIGIT} (the image is blank)"
    text = run_script("predict.py", f"ckpt_path={notebook_hidden_run.checkpoint}", f"image={tmp_path}/blank.png")
    assert text.returncode == 0 and text.stdout.splitlines()[-1] == (
        f"warning: {NO_DIGIT} (the image is blank); the prediction is not a reading of a digit"
    )


def test_a_torchscript_model_is_refused_without_unsafe_advice(notebook_hidden_run: TrainedRun, tmp_path: Path) -> None:
    export = run_script(
        "export.py", f"ckpt_path={notebook_hidden_run.checkpoint}", "format=torchscript", f"output_dir={tmp_path}"
    )
    assert export.returncode == 0, export.stderr[-3000:]
    message = one_line_error(f"ckpt_path={tmp_path}/model.pt", "index=1")
    assert message.startswith(f"error: {tmp_path}/model.pt is a TorchScript model (load it with torch.jit.load); ")
    assert "predict.py and serve.py also take an ONNX model written by export.py (model.onnx)" in message
    assert "weights_only=False" not in message


def test_an_onnx_model_on_a_gpu_is_refused_not_run_on_the_cpu(tmp_path: Path) -> None:
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.predictors import load_predictor

    with pytest.raises(MnistlabError, match=r"accelerator=gpu: an ONNX model runs on the CPU here"):
        load_predictor(tmp_path / "model.onnx", "gpu")


def test_a_folders_link_to_no_file_is_named_not_passed_over(tmp_path: Path) -> None:
    # Before: image=digits/ with digits/b.png a link to a deleted file predicted a.png alone, without a word.
    folder = tmp_path / "digits"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "a.png")
    (folder / "b.png").symlink_to(tmp_path / "deleted.png")
    skipped: list[str] = []
    assert image_files(folder, skipped) == [folder / "a.png"]
    assert skipped == [f"1 link(s) of {folder} to no file (b.png)"]
