"""Knowledge distillation: a frozen teacher's softened probabilities as a second training target.

The loss is Hinton, Vinyals and Dean's (2015):
``(1 - alpha) * loss(labels) + alpha * T^2 * KL(teacher_T || student_T)``, where ``p_T`` is
``softmax(log p / T)``; the ``T^2`` keeps the soft term's gradients on the scale of the hard one's
as ``T`` changes. The teacher sees the very batch the student trains on (after augmentation),
inside the training step, so the fast engine and its CUDA graph run it like any other layer.

The teacher is no submodule of the system: Lightning would otherwise switch it to train mode,
save its weights in every student checkpoint and hand it to the optimizer. A student checkpoint
records only where its teacher came from (``Teacher.provenance``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.checkpoint_records import class_path
from mnistlab.config_checks import check_number
from mnistlab.errors import ConfigError, first_line
from mnistlab.systems.losses import probability_outputs

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, C), labels (B,)) -> scalar


def log_probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """(B, C) logits -> (B, C) log-probabilities, the log of ``mnistlab.systems.losses.probabilities``."""
    if head == "sigmoid":
        return F.log_softmax(-F.softplus(-logits), -1)  # renormalised sigmoids, see losses.probabilities
    return F.log_softmax(logits, -1)


def soft_targets(log_p: torch.Tensor, temperature: float) -> torch.Tensor:
    """(K, B, C) members' log-probabilities -> (B, C): the mean of their distributions softened by ``T``."""
    return F.softmax(log_p / temperature, -1).mean(0)


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_p: torch.Tensor,
    hard_loss: Loss,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``(1 - alpha) * hard_loss(logits, labels) + alpha * T^2 * KL(teacher_p || softmax(logits / T))``.

    Args:
        logits: (B, C) the student's logits.
        labels: (B,) class indices.
        teacher_p: (B, C) the teacher's probabilities at temperature ``T`` (``soft_targets``).
        hard_loss: The student's loss on the labels (its head's).
        temperature: T > 0.
        alpha: The soft term's weight, in [0, 1].
    """
    student_log_p = F.log_softmax(logits / temperature, -1)  # (B, C)
    soft = F.kl_div(student_log_p, teacher_p, reduction="batchmean") * temperature**2
    return (1 - alpha) * hard_loss(logits, labels) + alpha * soft


class Teacher(nn.Module):
    """One trained network, or several averaged (an ensemble), frozen in eval mode.

    Args:
        nets: The members' networks; their outputs must have the same width.
        heads: Each member's head (``softmax`` or ``sigmoid``), which says what its logits mean.
        sources: The files the members were read from, hashed for the student's provenance.
        class_names: The members' class names (None: not known, not checked).
        inputs: Per member, the affine map ``x * scale + shift`` from the student's inputs to the
            member's (a teacher trained with ``data.normalize=true`` and a student without, or the
            reverse); None: they take the same inputs.
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        heads: Sequence[str],
        sources: Sequence[Path] = (),
        class_names: Sequence[str] | None = None,
        inputs: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names) if class_names is not None else None
        self.inputs = list(inputs) if inputs is not None else [(1.0, 0.0)] * len(nets)
        self.nets = nn.ModuleList(nets)
        self.heads = list(heads)
        self.sources = [Path(s).resolve() for s in sources]
        # Hashed once, as loaded: every checkpoint the student writes records the same files.
        self._provenance = {"members": [{"path": str(s), "sha256": sha256(s)} for s in self.sources]}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen: never leaves eval mode (dropout off, batch-norm statistics fixed)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(B, 1, 28, 28) images -> (B, C) the members' mean probabilities at ``temperature``, in ``x``'s dtype.

        Each member sees the images in its own weights' dtype: a student of ``trainer.precision=64`` feeds float64,
        which a float32 teacher's first layer refused with a traceback.
        """
        log_p = torch.stack(
            [
                log_probabilities(net(_as_weights(net, x if (a, b) == (1, 0) else x * a + b)), head).to(x.dtype)
                for net, head, (a, b) in zip(self.nets, self.heads, self.inputs, strict=True)
            ]
        )  # (K, B, C)
        return soft_targets(log_p, temperature)  # (B, C)

    def provenance(self) -> dict[str, Any]:
        """Where the teacher came from: each member's file and its SHA-256 when it was read."""
        return self._provenance


def _as_weights(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype of ``net``'s first floating-point parameter (x itself when it has none)."""
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), x.dtype)
    return x if x.dtype == dtype else x.to(dtype)


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read once while it stays the same file (path, inode, size, modification time).

    A resumed distillation run checks its teacher's files against its checkpoint's record before Hydra writes
    into its folder and again as the job starts (``resume.run.recorded_teacher``), then records them as the
    teacher is loaded (``Teacher``): each was a full read of every teacher checkpoint.
    """
    stat = path.stat()
    return _file_sha256(path.resolve(), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: Path, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class TrainingLoss:
    """The loss of a training step: the head's loss on the labels, plus the teacher's term when there is one.

    A plain object, not a module, so that the teacher stays out of the system's modules (see above).

    Args:
        hard_loss: The head's loss.
        teacher: The frozen teacher, or None for the labels alone.
        temperature: T of the soft targets.
        alpha: The weight of the teacher's term.
    """

    def __init__(self, hard_loss: Loss, teacher: Teacher | None = None, temperature: float = 4.0, alpha: float = 0.5):
        check_number("system.temperature", temperature, low=0, low_open=True, finite=True)  # inf: a NaN loss
        check_number("system.alpha", alpha, low=0, high=1)
        self.hard_loss, self.teacher, self.temperature, self.alpha = hard_loss, teacher, temperature, alpha

    @property
    def step_teacher(self) -> Teacher | None:
        """The teacher whose forward a training step runs (and a CUDA graph records): None at ``alpha=0``.

        alpha=0: (1 - 0) * hard + 0 * soft is the hard loss bit for bit (the soft term is finite), so the
        teacher's forward, which draws no random numbers (eval mode), would be spent on nothing.
        """
        return None if self.alpha == 0 else self.teacher

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if (teacher := self.step_teacher) is None:
            return self.hard_loss(logits, labels)
        teacher_p = teacher(x, self.temperature)  # (B, C), no graph of its own: the teacher is frozen
        return distillation_loss(logits, labels, teacher_p, self.hard_loss, self.temperature, self.alpha)

    def to(self, device: torch.device) -> TrainingLoss:
        if self.teacher is not None:
            self.teacher.to(device)
        return self


def check_teacher(teacher: Teacher, num_classes: int, class_names: Sequence[str] | None, head: str) -> None:
    """Refuses, in one line, a teacher whose classes or input differ from the student's, or returning probabilities."""
    if head != "softmax":
        raise ConfigError("system.teacher needs system.head=softmax (the soft targets are a softmax's)")
    try:
        out = teacher(torch.zeros(2, 1, 28, 28))  # (2, C): the student's input shape
    except RuntimeError as e:
        reason = first_line(e)
        raise ConfigError(f"system.teacher does not take the student's (B, 1, 28, 28) images ({reason})") from None
    for net, source in zip(teacher.nets, teacher.sources or [None] * len(teacher.nets), strict=True):
        if (layer := probability_outputs(net)) is not None:  # softmax(p / T) of probabilities p is nearly uniform
            where = f" ({source})" if source is not None else ""
            raise ConfigError(
                f"system.teacher: {class_path(type(net))}{where} returns probabilities (a final {layer}), which "
                f"the soft targets would take as logits, so they would be nearly uniform and teach nothing; train "
                f"the teacher without its final {layer}"
            )
    if out.shape[-1] != num_classes:
        raise ConfigError(f"system.teacher has {out.shape[-1]} classes, the student {num_classes}")
    names = teacher.class_names
    if names is not None and class_names is not None and list(names) != list(class_names):
        raise ConfigError(f"system.teacher's classes {list(names)} are not the student's {list(class_names)}")
