"""Export for deployment: ONNX or TorchScript files that map pixels to probabilities, checked at write time."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mnistlab.config_checks import check_number
from mnistlab.data.specs import input_stats
from mnistlab.errors import MnistlabError
from mnistlab.evaluation.ensemble import load_model
from mnistlab.evaluation.evaluate import official_test_set
from mnistlab.evaluation.predictors import META_KEYS, META_PREFIX, OnnxPredictor, ProbabilityNet, quiet
from mnistlab.extras import require

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
CHECK_IMAGES = 100
# The checkpoints an export was made from, recorded in it (ONNX metadata, a TorchScript extra file): a later
# export into the same folder names them as it replaces the file.
SOURCE = META_PREFIX + "checkpoints"


def write_onnx(model: ProbabilityNet, path: Path, metadata: dict[str, str]) -> None:
    """ONNX through ``torch.onnx.export`` (the dynamo exporter) with a dynamic batch dimension."""
    import onnx
    import onnxscript  # noqa: F401  (torch.onnx.export's dynamo exporter needs it; `export` checked both)

    example = torch.rand(2, 1, 28, 28)
    with quiet("onnxscript", "onnx_ir"), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress notes
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))


def exported_from(path: Path) -> str:
    """The checkpoints an earlier export at ``path`` records, for the line that says it is replaced."""
    try:
        if path.suffix == ".onnx":
            import onnx

            recorded = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            sources = json.loads(recorded[SOURCE])
        else:
            extra = {SOURCE: ""}
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            sources = json.loads(extra[SOURCE])
    except Exception:  # an export from before the record, or a file of another tool's: it names no checkpoint
        return "a checkpoint it does not record"
    return ", ".join(sources) if len(sources) <= 2 else f"an ensemble of {len(sources)} checkpoints ({sources[0]}, ...)"


def export(
    ckpt_path: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    fmt: str = "onnx",
    data_overrides: dict[str, Any] | None = None,
    tolerance: float = 1e-5,
) -> tuple[Path, float, str | None]:
    """Writes ``model.onnx`` or ``model.pt`` into ``output_dir`` and checks it against PyTorch.

    The file maps (N, 1, 28, 28) float pixels in [0, 1] to (N, C) probabilities for any N; the
    run's input standardisation, if any, is built in. It is checked on the first 100 test images
    (ONNX Runtime or ``torch.jit.load``) and deleted again if any probability differs by more
    than ``tolerance``. Several checkpoints are exported as their ensemble, one graph whose output
    is the mean of the members' probabilities (``mnistlab.evaluation.ensemble``).

    A file there already is replaced, as ``torch.save`` and ``onnx.save`` would; the third value says so,
    with the checkpoints the replaced file was exported from, so that no export is lost without a word.

    Returns:
        The file, the largest absolute difference found, and the line about the file it replaced (or None).
    """
    if fmt not in SUFFIXES:
        raise MnistlabError(f"format={fmt} must be one of {sorted(SUFFIXES)}")
    check_number("tolerance", tolerance, low=0)
    if fmt == "onnx":  # before the checkpoint is read: nothing is done that the missing extra would waste
        require("format=onnx", "export", "onnx", "onnxscript", "onnxruntime")
    out = Path(output_dir)
    made = [folder for folder in (*reversed(out.parents), out) if not folder.exists()]  # this command's folders
    try:  # before the work, too: a folder that cannot be made
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MnistlabError(f"output_dir={output_dir} cannot be made: {e.strerror or e}") from None
    try:
        return _export(ckpt_path, out / f"model{SUFFIXES[fmt]}", fmt, data_overrides, tolerance)
    except BaseException:
        for folder in reversed(made):  # the deepest first; what the command wrote nothing into goes again
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _export(
    ckpt_path: str | Path | Sequence[str | Path],
    path: Path,
    fmt: str,
    data_overrides: dict[str, Any] | None,
    tolerance: float,
) -> tuple[Path, float, str | None]:
    sources = [ckpt_path] if isinstance(ckpt_path, (str, Path)) else list(ckpt_path)
    system, saved = load_model(sources)
    mean, std = input_stats(saved)
    model = ProbabilityNet(system.net, system.head, mean, std).eval()
    images = official_test_set(saved, data_overrides)[0][:CHECK_IMAGES]  # (100, 1, 28, 28) in [0, 1]
    # Written beside it and checked before it replaces the file: a failed check leaves an earlier export as it was.
    staged = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    try:
        record = json.dumps([str(Path(source).resolve()) for source in sources])
        diff = _write_and_check(system, model, saved, images, staged, fmt, mean, std, record)
        if not diff <= tolerance:
            raise MnistlabError(f"export check failed: {fmt} output differs from PyTorch by {diff:.2e} > {tolerance:g}")
        replaced = None
        if path.exists():
            replaced = f"replaced the earlier {path}, exported from {exported_from(path)} (output_dir=... keeps both)"
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return path, diff, replaced


def _write_and_check(
    system: Any,
    model: ProbabilityNet,
    saved: dict[str, Any],
    images: torch.Tensor,
    path: Path,
    fmt: str,
    mean: float,
    std: float,
    record: str,
) -> float:
    """Writes ``model`` to ``path`` and returns the largest difference of its probabilities from the checkpoint's.

    Args:
        system: The checkpoint's system (an ensemble's), the reference.
        model: What is exported: pixels in [0, 1] -> probabilities, its standardisation built in.
        saved: The data module's saved arguments, recorded in an ONNX file's metadata.
        images: (N, 1, 28, 28) test pixels in [0, 1] that both compute.
        path: Where the file goes.
        fmt: ``onnx`` or ``torchscript``.
        mean: The run's input mean (0 without standardisation).
        std: The run's input std (1 without standardisation).
        record: The checkpoints it is made from (a JSON list), recorded in the file (``SOURCE``).
    """
    with torch.no_grad():
        expected = model.probabilities(system((images - mean) / std))  # (100, C), as the checkpoint predicts
        if fmt == "onnx":
            meta = zip(META_KEYS, (system.class_names, system.head, saved), strict=True)
            write_onnx(model, path, {META_PREFIX + key: json.dumps(value) for key, value in meta} | {SOURCE: record})
            actual = OnnxPredictor(path)(images)
        else:
            with warnings.catch_warnings():  # TorchScript is deprecated in PyTorch, but still what many servers load
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.jit.trace(model, images[:2])
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.jit.save(traced, str(path), _extra_files={SOURCE: record})
                actual = torch.jit.load(str(path))(images)
    return float((actual - expected).abs().max())
