"""What predicts: a checkpoint through Lightning's predict loop, or an exported ONNX file.

Both take (N, 1, 28, 28) float images in [0, 1] and return (N, C) probabilities, so the
caller never needs to know whether the run standardised its inputs; ``classify`` also returns the
predicted classes. A checkpoint's class is the argmax of its logits, the class its test counts
(``Classifier._eval_step``): a sigmoid head's probabilities tie at 1.0 in float32 once logits pass
about 17, and their argmax would name the first of the tied classes instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnistlab.checkpoint_paths import find_checkpoints
from mnistlab.data.specs import input_stats
from mnistlab.errors import MnistlabError
from mnistlab.extras import require
from mnistlab.systems import Classifier
from mnistlab.systems.losses import network_probabilities, probability_outputs

# What export.py stores in an ONNX file's metadata, each as JSON under "mnistlab.<key>", and OnnxPredictor reads.
META_KEYS = ("class_names", "head", "datamodule")
META_PREFIX = "mnistlab."


class ProbabilityNet(nn.Module):
    """(N, 1, 28, 28) pixels in [0, 1] -> (N, C) probabilities: the network as deployed.

    A network that returns probabilities itself (a final ``nn.Softmax``) has its outputs taken as they are, not
    through the head a second time (``mnistlab.systems.losses.network_probabilities``).

    Args:
        net: The trained network, any module returning (N, C) logits.
        head: The system's head (``softmax`` or ``sigmoid``), see ``mnistlab.systems.losses.probabilities``.
        mean: Subtracted from the pixels first (the run's standardisation, 0 if none).
        std: Then divided by.
    """

    def __init__(self, net: nn.Module, head: str = "softmax", mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.net, self.head, self.mean, self.std = net, head, mean, std
        self.returns = probability_outputs(net)  # "nn.Softmax" or "nn.Sigmoid" for probabilities, None for logits

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) logits of the network, from pixels in [0, 1]: what its own test takes the argmax of."""
        return self.net((images - self.mean) / self.std)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C) probabilities of the network's (N, C) outputs (``logits``)."""
        return network_probabilities(logits, self.head, self.returns)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self.logits(images))  # (N, C)


class Classify(pl.LightningModule):
    """A predict step with the class a system's test counts: (probabilities (B, C), argmax of the logits (B,)).

    The system's own ``predict_step`` returns the probabilities alone, whose argmax can differ (module docstring),
    and takes the outputs of a network that returns probabilities through its head a second time.

    Args:
        net: The checkpoint's network as deployed (an ensemble's: its logits are the log of the mean probabilities).
    """

    def __init__(self, net: ProbabilityNet) -> None:
        super().__init__()
        self.net = net

    def predict_step(self, batch: list[torch.Tensor], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net.logits(batch[0])  # (B, C)
        return self.net.probabilities(logits), logits.argmax(-1)


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Raises the given loggers to WARNING for a while, e.g. to hide Lightning's "GPU available" notes."""
    logs = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)


class CheckpointPredictor:
    """A training checkpoint, or an ensemble of several, run by ``Trainer.predict`` (``Classify``'s ``predict_step``).

    Args:
        path: A checkpoint or run folder, or an ensemble: a sweep folder or a list (``find_checkpoints``).
        accelerator: Lightning accelerator.
        batch_size: Images per predict batch.
        warn: Whether a network that returns probabilities gets its warning line (``load_model``).
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        accelerator: str = "auto",
        batch_size: int = 1000,
        warn: bool = True,
    ) -> None:
        from mnistlab.evaluation.ensemble import load_model  # it builds on this module's ProbabilityNet

        self.system: Classifier
        self.system, self.data_args = load_model(find_checkpoints(path), warn)
        self.class_names = list(self.system.class_names)
        self.head = self.system.head
        self.accelerator, self.batch_size = accelerator, batch_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) probabilities of (N, 1, 28, 28) images in [0, 1]."""
        return self.classify(images)[0]

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) probabilities and the (N,) classes the model's test counts (the argmax of its logits)."""
        loader = DataLoader(TensorDataset(images), batch_size=self.batch_size)  # standardised by ProbabilityNet
        with quiet("lightning.pytorch"):
            trainer = pl.Trainer(
                accelerator=self.accelerator,
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            net = ProbabilityNet(self.system.net, self.head, *input_stats(self.data_args))
            batches = trainer.predict(Classify(net), dataloaders=loader)
        probs, classes = zip(*batches, strict=True)
        return torch.cat(probs).cpu(), torch.cat(classes).cpu()  # (N, C), (N,)

    def resident(self, device: str | torch.device) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """This model kept on ``device``, computing what ``classify`` computes: for a server's many small batches.

        Each call of the predictor itself builds a Trainer, which moves the weights to the device and back.
        """
        mean, std = input_stats(self.data_args)
        net = ProbabilityNet(self.system.net, self.head, mean, std).to(device).eval()

        def classify(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.inference_mode():
                logits = net.logits(images.to(device))  # (N, C)
                return net.probabilities(logits).cpu(), logits.argmax(-1).cpu()

        return classify


class OnnxPredictor:
    """An ONNX file written by ``mnistlab.evaluation.export``, run by ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path) -> None:
        require("an ONNX file", "export", "onnxruntime")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MnistlabError(f"model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise MnistlabError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if any(META_PREFIX + key not in meta for key in META_KEYS):
            raise MnistlabError(f"{path}: not an ONNX file written by scripts/export.py (no mnistlab metadata)")
        self.class_names, self.head, self.data_args = (json.loads(meta[META_PREFIX + key]) for key in META_KEYS)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (probs,) = self.session.run(None, {"images": images.float().numpy()})
        return torch.from_numpy(probs)  # (N, C)

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) probabilities and their argmax (N,).

        The file outputs no logits: for a saturated sigmoid head (module docstring) its class can be
        the first of tied classes, where the checkpoint names the argmax of its logits.
        """
        probs = self(images)
        return probs, probs.argmax(-1)


def load_predictor(
    path: str | Path | Sequence[str | Path], accelerator: str = "auto", warn: bool = True
) -> CheckpointPredictor | OnnxPredictor:
    """An ``.onnx`` file, a checkpoint or an ensemble of several, as a callable from images to probabilities.

    ``warn``: whether a checkpoint's network that returns probabilities gets its warning line (``load_model``).

    Raises:
        MnistlabError: Before any work, for an ``accelerator`` that cannot run the model here.
    """
    several = isinstance(path, Sequence) and not isinstance(path, str)  # a list, a tuple or Hydra's ListConfig
    if several and len(path) == 1:  # [model.onnx] is that model, as serve.py reads it
        path = path[0]
        several = False
    if isinstance(path, (str, Path)) and Path(path).suffix.lower() == ".onnx":
        if accelerator not in ("auto", "cpu"):
            raise MnistlabError(
                f"accelerator={accelerator}: an ONNX model runs on the CPU here (ONNX Runtime's CPU provider); "
                "leave accelerator out, or give the checkpoint"
            )
        return OnnxPredictor(path)
    # Averaged by CheckpointPredictor; anything else (null, a number, a mapping) find_checkpoints refuses as no path.
    listed = [str(p) for p in path] if several else []
    if onnx := next((p for p in listed if p.lower().endswith(".onnx")), None):  # which cannot take an ONNX file
        raise MnistlabError(
            f"ckpt_path lists an ONNX model, {onnx}: a list is one ensemble of training checkpoints (.ckpt) or "
            f"run folders; give the ONNX model alone (ckpt_path={onnx}), or export the list's ensemble as one "
            "model.onnx (python scripts/export.py ckpt_path=[...] format=onnx output_dir=...)"
        )
    check_accelerator(accelerator)
    return CheckpointPredictor(path, accelerator, warn=warn)


def check_accelerator(accelerator: str) -> None:
    """Refuses an accelerator Lightning does not know or this machine lacks, in one line (Lightning's own words).

    Raises:
        MnistlabError: ``accelerator`` is no name Lightning knows (``cpux``), or names a device this
            machine does not have (``gpu`` without one); Lightning would say so later, in a traceback.
    """
    from mnistlab.user_errors import user_error

    try:
        with quiet("lightning.pytorch"):
            pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False)
    except Exception as e:  # ValueError for an unknown name, MisconfigurationException for a missing device
        message = user_error(e) or (str(e) if isinstance(e, (ValueError, ImportError)) else None)
        if message is None:
            raise
        raise MnistlabError(
            message if message.startswith("accelerator=") else f"accelerator={accelerator}: {message}"
        ) from None
