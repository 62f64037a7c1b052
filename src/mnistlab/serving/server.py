"""The LitServer of ``scripts/serve.py``: ``POST /predict``, ``GET /health``, ``GET /info``, the page at ``/``."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import litserve as ls
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException  # the base class: FastAPI's and the router's 404/405

from mnistlab.checkpoint_paths import find_checkpoints
from mnistlab.config_checks import check_number
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.predictors import load_predictor
from mnistlab.serving.api import DigitAPI
from mnistlab.serving.checks import MAX_BYTES, RequestChecks, error_response
from mnistlab.serving.litserve_private import LitServer

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServer.run binds to


def page() -> str:
    """The draw-a-digit page: one HTML file with its script and style inline (package data)."""
    return files("mnistlab.serving").joinpath("page.html").read_text(encoding="utf-8")


def model_spec(model_path: str | Path | Sequence[str | Path]) -> str | list[str]:
    """The model as plain strings for the inference worker: an ONNX file, or the checkpoint files it stands for.

    Folders are resolved here, once: the worker loads the files without announcing them again.
    """
    if isinstance(model_path, (str, Path)) and Path(model_path).suffix.lower() == ".onnx":
        return str(model_path)
    found = [str(f) for f in find_checkpoints(model_path)]
    return found[0] if len(found) == 1 else found


def build_server(
    model_path: str | Path | Sequence[str | Path],
    accelerator: str = "auto",
    max_batch_size: int = 32,
    batch_timeout: float = 0.01,
    timeout: float = 30.0,
) -> ls.LitServer:
    """A LitServer for a checkpoint, an ONNX file or an ensemble of checkpoints (a sweep folder, a list), with
    the request checks, the page and the model's class names.

    The model is loaded here once, so that a wrong path fails in one line before any worker starts;
    the inference worker loads its own copy in ``DigitAPI.setup``.
    """
    model = model_spec(model_path)
    predictor = load_predictor(model, accelerator)
    api = DigitAPI(model, accelerator, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    onnx = isinstance(model, str) and Path(model).suffix.lower() == ".onnx"
    server = LitServer(
        api,
        accelerator="cpu" if onnx else accelerator,  # ONNX Runtime runs on the CPU here
        devices=1,
        timeout=timeout,
        middlewares=[(RequestChecks, {"path": api.api_path, "max_bytes": MAX_BYTES})],
        model_metadata={"path": model, "class_names": predictor.class_names, "head": predictor.head},
    )
    app = server.app
    # LitServe answers GET / with "litserve running"; the page takes its place.
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page())

    @app.exception_handler(HTTPException)
    async def one_line_error(request: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI's {"detail": ...} (404, 405, LitServe's 504...) in this server's one error shape.
        return error_response(exc.status_code, str(exc.detail))

    return server


def check_address(host: str, port: int) -> None:
    """Refuses, in one line, an address LitServe cannot bind (it would fail later with a traceback)."""
    if host not in HOSTS:
        raise MnistlabError(f"host={host} must be one of {', '.join(HOSTS)} (127.0.0.1: this machine only)")
    if not 1024 <= port <= 65535:
        raise MnistlabError(f"port={port} must be from 1024 to 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise MnistlabError(f"port {port} is already in use on {host}: choose another with port=N") from None
            raise


def serve(
    model_path: str | Path | Sequence[str | Path],
    host: str = "127.0.0.1",
    port: int = 8000,
    accelerator: str = "auto",
    max_batch_size: int = 32,
    batch_timeout: float = 0.01,
    timeout: float = 30.0,
) -> None:
    """Serves until Ctrl+C or SIGTERM (scripts/serve.py: ``mnistlab.process.stop_server_on_signals``)."""
    check_number("max_batch_size", max_batch_size, integer=True, low=1)  # LitServe would refuse with a traceback
    check_number("batch_timeout", batch_timeout, low=0)
    check_number("timeout", timeout, low=0, low_open=True)
    check_address(host, port)
    server = build_server(model_path, accelerator, max_batch_size, batch_timeout, timeout)
    shown = "localhost" if host == "127.0.0.1" else host
    where = f"http://{shown}:{port}/"
    given = model_path if isinstance(model_path, (str, Path)) else ", ".join(map(str, model_path))
    print(f"serving {given} at {where}  (POST /predict, GET /health; Ctrl+C stops)", flush=True)
    server.run(host=host, port=port, generate_client_file=False, log_level="warning")
