"""Predictions for test-set images or image files: the plain function behind ``scripts/predict.py``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab.errors import MnistlabError
from mnistlab.evaluation.evaluate import official_test_set
from mnistlab.evaluation.images import image_files, read_gray, render
from mnistlab.evaluation.predictors import CheckpointPredictor, OnnxPredictor
from mnistlab.evaluation.preprocess import style_for
from mnistlab.evaluation.report import align


@dataclass
class Prediction:
    """One image's prediction.

    Attributes:
        source: ``{"index": i, "label": y}`` for a test image, ``{"file": path}`` for a file.
        image: (28, 28) pixels in [0, 1], what the model saw.
        probabilities: (C,) probabilities summing to 1.
        predicted: The predicted class: the one the model's test counts (``predictors.CheckpointPredictor.classify``:
            the argmax of the logits, never the first of tied probabilities).
        class_names: C names.
        warning: Why the image does not look like a digit (then the prediction is no reading), or None.
    """

    source: dict[str, Any]
    image: np.ndarray
    probabilities: torch.Tensor
    predicted: int
    class_names: list[str]
    warning: str | None = None

    @property
    def prediction(self) -> int:
        return self.predicted

    @property
    def confidence(self) -> float:
        # The largest probability: the probabilities rise with the logits, so the predicted class holds it.
        return float(self.probabilities[self.predicted])

    def record(self) -> dict[str, Any]:
        """The JSON object of this prediction."""
        return {
            "prediction": self.prediction,
            "class": self.class_names[self.prediction],
            "confidence": self.confidence,
            "probabilities": [float(p) for p in self.probabilities],
            **self.source,
            **({"warning": self.warning} if self.warning else {}),
        }

    def title(self) -> str:
        if "file" in self.source:
            return self.source["file"]
        return f"test image {self.source['index']} (label {self.class_names[self.source['label']]})"


def test_images(
    data_args: dict[str, Any], indices: list[int], overrides: dict[str, Any] | None = None
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Test-set images in [0, 1], (N, 28, 28), with their index and label."""
    images, labels = official_test_set(data_args, overrides)
    for i in indices:
        if not 0 <= i < len(labels):
            raise MnistlabError(f"index={i} is outside the test set (0-{len(labels) - 1})")
    return images[indices, 0], [{"index": i, "label": int(labels[i])} for i in indices]


def predict(
    predictor: CheckpointPredictor | OnnxPredictor,
    index: int | list[int] | None = None,
    image: str | Path | Sequence[str | Path] | None = None,
    data_overrides: dict[str, Any] | None = None,
    skipped: list[str] | None = None,
) -> list[Prediction]:
    """Predicts test images by ``index`` or image files by ``image`` (a file, folder or glob, or a list of them).

    Files are first brought into the dataset's form (``style_for``): for MNIST, one without digit-like
    ink gets a warning.
    With ``skipped`` given, an unreadable file among several is left out and its error appended there.
    """
    if (index is None) == (image is None):
        raise MnistlabError("give exactly one of index=N (a test image) or image=FILE|FOLDER|GLOB")
    if index is not None:
        indices = list(index) if isinstance(index, (list, tuple)) else [index]
        if not indices:  # nothing to predict: torch.cat of no batch would fail with a traceback
            raise MnistlabError("index=[] names no test image: give one (index=998) or several (index=[1,2])")
        for i in indices:  # the config gives whatever was typed: index=abc, index=2.5
            if isinstance(i, bool) or not isinstance(i, int):
                raise MnistlabError(f"index={i!r} is not a test-image number (an integer, or a list: index=[1,2])")
        images, sources = test_images(predictor.data_args, indices, data_overrides)
        warnings: list[str | None] = [None] * len(indices)
    else:
        patterns = [image] if isinstance(image, (str, Path)) else list(image)
        if not patterns:
            raise MnistlabError("image=[] names no file: give a file, folder or glob (image=my_digits/)")
        files, styled, unread = [f for pattern in patterns for f in image_files(pattern, skipped)], [], []
        style = style_for(predictor.data_args.get("dataset"))
        for f in files:
            try:
                styled.append((f, *style(read_gray(f))))
            except MnistlabError as e:  # one unreadable file of several: the others are still predicted
                if len(files) == 1 or skipped is None:
                    raise
                unread.append(str(e))
        if not styled:  # the reasons, which a partly readable set prints as skipped lines
            more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
            raise MnistlabError(f"image={image}: none of its {len(files)} files is a readable image: {unread[0]}{more}")
        if skipped is not None:
            skipped.extend(unread)
        images = torch.from_numpy(np.stack([img for _, img, _ in styled]))  # (N, 28, 28)
        warnings = [warning for _, _, warning in styled]
        sources = [{"file": str(f)} for f, _, _ in styled]
    probabilities, classes = predictor.classify(images.unsqueeze(1).float())  # (N, C), (N,)
    return [
        Prediction(src, img.numpy(), p, int(c), predictor.class_names, warning)
        for src, img, p, c, warning in zip(sources, images, probabilities, classes, warnings, strict=True)
    ]


def to_json(predictions: list[Prediction]) -> str:
    return json.dumps([p.record() for p in predictions], indent=2)


def to_text(predictions: list[Prediction], head: str = "softmax") -> str:
    """One image: its picture, the probability of each class and the verdict. Several: a table."""
    note = "  (sigmoid outputs normalised to sum 1)" if head == "sigmoid" else ""
    if len(predictions) == 1:
        p = predictions[0]
        names = p.class_names
        width = max(map(len, names))
        lines = [p.title(), render(p.image), f"probabilities{note}"]
        for i, (name, prob) in enumerate(zip(names, p.probabilities.tolist(), strict=True)):
            mark = "  <- prediction" if i == p.prediction else ""
            lines.append(f"  {name.ljust(width)}  {prob:.4f}  {'█' * round(prob * 20)}{mark}".rstrip())
        lines.append(f"prediction {names[p.prediction]}  confidence {p.confidence:.2%}")
        if p.warning:
            lines.append(f"warning: {p.warning}; the prediction is not a reading of a digit")
        return "\n".join(lines)
    names = predictions[0].class_names
    header = ["input", "pred", "conf", *names]
    rows = [
        [p.title(), p.class_names[p.prediction], f"{p.confidence:.2%}", *(f"{v:.3f}" for v in p.probabilities)]
        for p in predictions
    ]
    flagged = [f"warning: {p.title()}: {p.warning}" for p in predictions if p.warning]
    return "\n".join([align([header, *rows]), *([note.strip()] if note else []), *flagged])
