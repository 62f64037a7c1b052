"""scripts/serve.py: the real LitServe server on a free port, its JSON, batching, errors, and the page in Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR, ROOT, TrainedRun, run_script, train
from PIL import Image

from mnistlab.data.files import load_split
from mnistlab.data.specs import MNIST

NOTHING = "\N{EN DASH}"  # what the page shows before a prediction
SCREENSHOT = ROOT / "docs" / "images" / "serve.png"  # the README's picture of the page, taken by the page test
FIELDS = {"prediction", "class", "confidence", "probabilities"}


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train(tmp_path_factory.mktemp("serve") / "run", "trainer.max_epochs=1")


@pytest.fixture(scope="module")
def png_998(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    images, labels = load_split(mnist_dir, MNIST, train=False)
    assert labels[998] == 8
    path = tmp_path_factory.mktemp("digits") / "test_998.png"
    Image.fromarray(images[998].numpy()).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST when ``body`` is given; 4xx/5xx are returned, not raised."""
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def multipart(data: bytes, name: str = "file", **fields: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part (plus plain fields), as ``curl -F`` sends it."""
    boundary = "mnistlab-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="digit.png"\r\n'
    parts.append(head.encode() + b"Content-Type: image/png\r\n\r\n" + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_json(url: str, payload: object) -> tuple[int, dict]:
    status, body = request(f"{url}/predict", json.dumps(payload).encode(), "application/json")
    return status, json.loads(body)


def group_alive(pgid: int, wait: float = 20) -> bool:
    """Whether a process of group ``pgid`` still runs after ``wait`` seconds (worker processes end after the server)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.5)
    return True


@contextmanager
def running_server(model: Path, log: Path, ctrl_c: bool = False) -> Iterator[str]:
    """Starts ``scripts/serve.py`` on 127.0.0.1 and a free port, yields its URL once /health answers, stops it.

    It is stopped by ``kill`` (SIGTERM to serve.py), or with ``ctrl_c`` as a terminal's Ctrl+C does: SIGINT to
    every process of its group, LitServe's workers included (each printed a traceback).
    """
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "serve.py"), f"ckpt_path={model}", f"port={port}"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the fallback below can reach its worker processes
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"serve.py exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no /health within 180 s:\n{log.read_text()[-3000:]}"
            try:
                if request(f"{url}/health")[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        yield url
    finally:
        if ctrl_c:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)  # serve.py stops like on Ctrl+C, its workers included
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        leftovers = group_alive(process.pid)
        if leftovers:
            os.killpg(process.pid, signal.SIGKILL)
    # Ctrl+C: the shell's status and one line, as every script; SIGTERM: a service manager's orderly stop.
    assert process.returncode == (130 if ctrl_c else 0) and not leftovers, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert (log.read_text().splitlines()[-1] == "interrupted") == ctrl_c, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def server(one_epoch_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(one_epoch_run.checkpoint, tmp_path_factory.mktemp("logs") / "serve.log") as url:
        yield url


def predict_json(model: Path, *overrides: str) -> dict:
    result = run_script("predict.py", f"ckpt_path={model}", "format=json", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = json.loads(result.stdout)
    return record


@pytest.mark.slow
def test_png_998_gets_predict_py_answer(server: str, one_epoch_run: TrainedRun, png_998: Path) -> None:
    by_index = predict_json(one_epoch_run.checkpoint, "index=998")
    by_file = predict_json(one_epoch_run.checkpoint, f"image={png_998}")  # the same PNG through predict.py
    png = png_998.read_bytes()
    status, body = request(f"{server}/predict", *multipart(png))
    assert status == 200, body
    uploaded = json.loads(body)
    status, as_json = post_json(server, {"image": base64.b64encode(png).decode()})
    assert status == 200, as_json
    for served in (uploaded, as_json):
        assert set(served) == FIELDS  # predict.py's object, without its file/index fields
        assert (served["prediction"], served["class"]) == (by_index["prediction"], by_index["class"]) == (8, "8")
        for reference in (by_file, by_index):
            assert np.allclose(served["probabilities"], reference["probabilities"], rtol=0, atol=1e-5)
            assert served["confidence"] == pytest.approx(reference["confidence"], abs=1e-5)
    # return_input adds the 28x28 image the model saw and changes nothing else; a data: URL works too.
    status, seen = post_json(
        server, {"image": "data:image/png;base64," + base64.b64encode(png).decode(), "return_input": True}
    )
    assert status == 200 and {k: seen[k] for k in FIELDS} == as_json
    digit = np.asarray(Image.open(png_998), dtype=np.float64) / 255
    assert np.allclose(seen["input"], digit, atol=1e-4)
    status, body = request(f"{server}/predict", *multipart(png, return_input="true"))
    assert status == 200 and np.allclose(json.loads(body)["input"], digit, atol=1e-4)
    # The digit as a .npy array, which predict.py takes: the server refused it as "not an image" before.
    array = io.BytesIO()
    np.save(array, np.asarray(Image.open(png_998)))
    status, body = post_json(server, {"image": base64.b64encode(array.getvalue()).decode()})
    assert status == 200 and {k: body[k] for k in FIELDS} == as_json, body


@pytest.mark.slow
def test_32_concurrent_requests_all_succeed(server: str, png_998: Path) -> None:
    # Digits of three classes, so that a batch mixing them must keep each answer with its own request.
    images, labels = load_split(DATA_DIR / "mnist", MNIST, train=False)
    picks = [998, int(np.flatnonzero(labels.numpy() == 1)[0]), int(np.flatnonzero(labels.numpy() == 0)[0])]
    pngs = {}
    for i in picks:
        path = png_998.parent / f"test_{i}.png"
        Image.fromarray(images[i].numpy()).save(path)
        pngs[i] = path.read_bytes()
    alone = {i: json.loads(request(f"{server}/predict", *multipart(data))[1]) for i, data in pngs.items()}
    jobs = [picks[n % len(picks)] for n in range(32)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: request(f"{server}/predict", *multipart(pngs[i])), jobs))
    assert [status for status, _ in answers] == [200] * 32
    for i, (_, body) in zip(jobs, answers, strict=True):
        record = json.loads(body)
        assert record["prediction"] == alone[i]["prediction"]
        assert np.allclose(record["probabilities"], alone[i]["probabilities"], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: str, png_998: Path, tmp_path: Path) -> None:
    png = png_998.read_bytes()
    big = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)  # noise: PNG can't shrink it
    Image.fromarray(big).save(tmp_path / "big.png")
    white = tmp_path / "white.png"
    Image.new("L", (50, 50), 255).save(white)
    eight = np.asarray(Image.open(png_998).convert("L"))
    Image.fromarray(np.concatenate([eight, eight], axis=1)).save(tmp_path / "88.png")
    cases = {
        "not an image (file)": (*multipart(b"just some text"), 400),
        "not an image (base64)": (
            json.dumps({"image": base64.b64encode(b"text").decode()}).encode(),
            "application/json",
            400,
        ),
        "not base64": (b'{"image": "!!!"}', "application/json", 400),
        "a broken .npy array": (*multipart(b"\x93NUMPY\x01\x00 cut short"), 400),
        "no digit on the image": (*multipart(white.read_bytes()), 400),
        "two digits on the image": (*multipart((tmp_path / "88.png").read_bytes()), 400),
        "empty body (json)": (b"", "application/json", 400),
        "empty body (form)": (b"", "multipart/form-data; boundary=x", 400),
        "empty file": (*multipart(b""), 400),
        "form without a file": (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            400,
        ),
        "invalid JSON": (b"{not json", "application/json", 400),
        "return_input not a boolean": (
            json.dumps({"image": base64.b64encode(png).decode(), "return_input": "false"}).encode(),
            "application/json",
            400,
        ),
        "return_input not a boolean (form)": (*multipart(png, return_input="foo"), 400),
        "return_input empty (form)": (*multipart(png, return_input=""), 400),
        "two files": (
            multipart(png)[0].removesuffix(b"--mnistlab-test-boundary--\r\n") + multipart(png)[0],
            multipart(png)[1],
            400,
        ),
        "JSON without image": (b'{"picture": 1}', "application/json", 400),
        "over 5 MB": (*multipart((tmp_path / "big.png").read_bytes()), 413),
        "wrong content type": (png, "image/png", 415),
        "no content type": (png, None, 415),
    }
    assert len((tmp_path / "big.png").read_bytes()) > 5 * 2**20
    for name, (body, content_type, expected) in cases.items():
        status, answer = request(f"{server}/predict", body, content_type)
        assert status == expected, (name, status, answer)
        assert answer.count(b"\n") == 0 and set(json.loads(answer)) == {"error"}, (name, answer)
        assert request(f"{server}/health") == (200, b"ok"), name
    assert request(f"{server}/predict")[0] == 405  # GET
    status, answer = request(f"{server}/predict", *multipart(png))
    assert status == 200 and json.loads(answer)["prediction"] == 8


@pytest.mark.slow
def test_serves_an_exported_onnx_file(one_epoch_run: TrainedRun, png_998: Path, tmp_path: Path) -> None:
    result = run_script("export.py", f"ckpt_path={one_epoch_run.checkpoint}", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    by_file = predict_json(one_epoch_run.checkpoint, f"image={png_998}")
    with running_server(tmp_path / "model.onnx", tmp_path / "serve.log", ctrl_c=True) as url:
        status, body = request(f"{url}/predict", *multipart(png_998.read_bytes()))
        info = json.loads(request(f"{url}/info")[1])
    assert status == 200 and info["model"]["class_names"] == [str(d) for d in range(10)]
    assert np.allclose(json.loads(body)["probabilities"], by_file["probabilities"], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_ctrl_c_stops_the_server_with_one_line_and_130(one_epoch_run: TrainedRun, tmp_path: Path) -> None:
    """Before, LitServe took the Ctrl+C and serve.py exited with 0, silent; the other scripts exit with 130."""
    with running_server(one_epoch_run.checkpoint, tmp_path / "serve.log", ctrl_c=True) as url:
        assert request(f"{url}/health")[0] == 200
    # running_server sent SIGINT to the whole group and checked the status, the last line and no traceback.


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    def error(*overrides: str) -> str:
        result = run_script("serve.py", *overrides, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        return result.stderr.strip().splitlines()[-1]

    assert error(f"ckpt_path={tmp_path}/missing.ckpt") == f"error: checkpoint not found: {tmp_path}/missing.ckpt"
    assert error(f"ckpt_path={tmp_path}/x.ckpt", "host=10.1.2.3").startswith("error: host=10.1.2.3 must be one of")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert error(f"ckpt_path={tmp_path}/x.ckpt", f"port={port}") == (
            f"error: port {port} is already in use on 127.0.0.1: choose another with port=N"
        )


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install both)"
)
def test_page_in_headless_chromium(server: str, png_998: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        size = {"width": 960, "height": 520, "deviceScaleFactor": 1, "mobile": False}  # the screenshot's size
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", size)
        wait = WebDriverWait(driver, 60)
        shown = lambda: driver.find_element(By.ID, "prediction").text  # noqa: E731
        settled = lambda d: not d.execute_script("return busy || again")  # no prediction in flight or queued  # noqa: E731
        driver.get(f"{server}/")
        wait.until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#bars .name")] == list("0123456789"))
        assert shown() == NOTHING

        # A vertical stroke down the middle of the pad: the prediction updates while the button is still down.
        pad = driver.find_element(By.ID, "pad")
        stroke = ActionChains(driver).move_to_element_with_offset(pad, 0, -90).click_and_hold()
        for _ in range(9):
            stroke.move_by_offset(0, 10)
        stroke.perform()
        wait.until(lambda d: shown() != NOTHING)
        finish = ActionChains(driver)
        for _ in range(9):
            finish.move_by_offset(0, 10)
        finish.release().perform()
        wait.until(settled)
        assert shown() == "1"
        bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [b.get_attribute("class") for b in bars] == ["bar", "bar top"] + ["bar"] * 8
        width = lambda name: bars[1].find_element(By.CLASS_NAME, name).size["width"]  # noqa: E731
        wait.until(lambda d: width("fill") > width("track") / 2)  # the predicted class's bar is drawn, over half full

        driver.find_element(By.ID, "clear").click()
        assert shown() == NOTHING
        driver.find_element(By.ID, "upload").send_keys(str(png_998))
        wait.until(lambda d: shown() == "8")
        wait.until(settled)
        # The 28x28 input drawn beside the pad is test image 998 itself (the recipe leaves MNIST digits as they are).
        seen = driver.execute_script(
            "return Array.from(document.getElementById('input').getContext('2d').getImageData(0, 0, 28, 28).data)"
        )
        digit = np.asarray(Image.open(png_998), dtype=np.int64)
        assert np.abs(np.asarray(seen).reshape(28, 28, 4)[..., 0] - digit).max() <= 1
        # Into tmp_path, never the tracked tree: copy it over docs/images/serve.png when the page changes.
        shot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(shot))
        assert Image.open(shot).size == Image.open(SCREENSHOT).size == (960, 520)
    finally:
        driver.quit()


def test_shutdown_stops_litserves_monitoring_thread_before_closing_its_manager() -> None:
    """Before, LitServe's monitoring thread kept asking the manager its shutdown had closed: now and then a
    server's log ended with ``Monitoring worker crashed ... ConnectionResetError`` (a CI run's error)."""
    import litserve as ls

    from mnistlab.serving.litserve_private import MONITOR_THREAD, PRIVATE_NAMES, LitServer

    class Echo(ls.LitAPI):
        def setup(self, device: str) -> None:
            pass

        def predict(self, x: object) -> object:
            return x

    server = LitServer(Echo(), accelerator="cpu", devices=1)
    manager = server._init_manager(1)  # what LitServer.run starts, without its workers and HTTP servers
    for name in PRIVATE_NAMES:
        assert hasattr(server, name), f"LitServe has no LitServer.{name} any more: see litserve_private.py"
    server.inference_workers = []
    server._start_worker_monitoring(manager, {})
    monitors = [t for t in threading.enumerate() if t.name == MONITOR_THREAD]
    assert len(monitors) == 1, f"LitServe's monitoring thread is no longer named {MONITOR_THREAD!r}"
    server._perform_graceful_shutdown(manager, {})
    # The manager is closed now: a thread still polling it would fail at its next question.
    assert not monitors[0].is_alive()
