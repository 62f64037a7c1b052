"""The LitServe API: request -> predict.py's preprocessing -> batched predictor -> predict.py's JSON."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import litserve as ls
import numpy as np
import torch

from mnistlab import process
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.images import NPY_MAGIC, decode_array, decode_image
from mnistlab.evaluation.predict import Prediction
from mnistlab.evaluation.predictors import CheckpointPredictor, load_predictor
from mnistlab.evaluation.preprocess import style_for
from mnistlab.serving.checks import error_response


@dataclass
class Decoded:
    """One request's image as the model will see it.

    Attributes:
        image: (28, 28) float32 in [0, 1], in the dataset's form (``preprocess.style_for``).
        return_input: Whether the response should carry ``image`` as ``input``.
    """

    image: np.ndarray
    return_input: bool


@dataclass
class Refused:
    """A request whose content is unusable; answered alone, so the rest of its batch still succeeds."""

    status: int
    message: str


def image_bytes(payload: Any) -> tuple[bytes, bool]:
    """The encoded image and the ``return_input`` flag of a JSON object or a multipart form.

    JSON: ``{"image": "<base64>" or "data:image/png;base64,<base64>", "return_input": false}``.
    Form: its one file field, plus an optional ``return_input`` field (true, false, 1 or 0).
    """
    if isinstance(payload, dict):
        text = payload["image"].split(",", 1)[-1] if payload["image"].startswith("data:") else payload["image"]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MnistlabError("the image field is not valid base64") from None
        return data, bool(payload.get("return_input"))
    upload = next(value for value in payload.values() if hasattr(value, "read"))  # checks.py made sure of one
    flag = str(payload.get("return_input", "false")).lower() in ("true", "1")  # checks.py refused any other text
    return upload.file.read(), flag


def preprocess(data: bytes, dataset: str | None = None) -> np.ndarray:
    """An encoded image or a ``.npy`` array -> (28, 28) float32 in [0, 1], by the functions ``predict.py`` uses."""
    if not data:
        raise MnistlabError("the image is empty")
    # predict.py's readers: a .npy array (by its format's magic bytes), or an image file.
    gray = (decode_array if data.startswith(NPY_MAGIC) else decode_image)(io.BytesIO(data))
    image, warning = style_for(dataset)(gray)
    if warning:  # predict.py prints it beside a guess; a service answers 400 rather than a confident-looking guess
        raise MnistlabError(warning)
    return image


class DigitAPI(ls.LitAPI):
    """Serves a checkpoint or an exported ONNX file; concurrent requests are predicted in batches.

    Args:
        model_path: A ``.ckpt`` training checkpoint or a ``.onnx`` file from ``scripts/export.py``, or
            several checkpoints (or a sweep folder) served as one ensemble.
        accelerator: Lightning accelerator for checkpoints (ONNX files run on the CPU).
        max_batch_size: Most requests predicted together.
        batch_timeout: Seconds LitServe waits for a batch to fill.
    """

    def __init__(
        self,
        model_path: str | list[str],
        accelerator: str = "auto",
        max_batch_size: int = 32,
        batch_timeout: float = 0.01,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_path, self.accelerator = model_path, accelerator

    def setup(self, device: str) -> None:
        process.ignore_interrupts_in_worker()  # a terminal's Ctrl+C reaches this worker too: a traceback each
        # The server's main process loaded the model first and said what it had to (serving.server): once, not twice.
        predictor = load_predictor(self.model_path, self.accelerator, warn=False)
        self.class_names, self.dataset = predictor.class_names, predictor.data_args.get("dataset")
        # A checkpoint stays on LitServe's device between batches (ONNX Runtime runs where it was loaded).
        self.classify = predictor.resident(device) if isinstance(predictor, CheckpointPredictor) else predictor.classify

    # decode_request's `request` and encode_response's return stay unannotated: LitServe turns these annotations
    # into the FastAPI route's parameter and response types (none = the raw request, any response).
    def decode_request(self, request):
        """A parsed JSON object or form -> ``Decoded``, or ``Refused`` for unusable content."""
        # Runs in the inference worker, once per request of a batch: errors become a value, not an exception,
        # because LitServe fails a whole batch when decode_request raises.
        try:
            data, return_input = image_bytes(request)
            return Decoded(preprocess(data, self.dataset), return_input)
        except MnistlabError as e:
            return Refused(400, str(e))

    def batch(self, inputs: list[Decoded | Refused]) -> list[Decoded | Refused]:
        return inputs

    def predict(self, x: Any) -> Any:
        if self.max_batch_size == 1:  # LitServe's unbatched loop passes one request, not a list
            return self.predict_all([x])[0]
        return self.predict_all(x)

    def predict_all(self, items: list[Decoded | Refused]) -> list[tuple[Prediction, bool] | Refused]:
        """Predicts the decoded images of a batch in one call; refusals pass through in place."""
        images = [item.image for item in items if isinstance(item, Decoded)]
        if not images:
            return list(items)
        probabilities, classes = self.classify(torch.from_numpy(np.stack(images)).unsqueeze(1))  # (N, C), (N,)
        rows = zip(probabilities, classes.tolist(), strict=True)
        names = self.class_names
        return [
            (Prediction({}, item.image, *next(rows), names), item.return_input) if isinstance(item, Decoded) else item
            for item in items
        ]

    def encode_response(self, output: tuple[Prediction, bool] | Refused):
        """predict.py's JSON object (plus ``input`` if asked), or a JSON error response."""
        if isinstance(output, Refused):
            return error_response(output.status, output.message)
        prediction, return_input = output
        record = prediction.record()  # exactly predict.py format=json's object (no source fields here)
        if return_input:
            record["input"] = np.round(prediction.image, 4).tolist()  # (28, 28), what the model saw
        return record
