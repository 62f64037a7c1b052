"""The result of testing a classifier, and its renderings: console tables, CSV, JSON, Markdown."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab.atomic_files import write_atomic

METRICS = ("precision", "recall", "f1")


@dataclass
class TestResult:
    """Everything the test stage measured.

    Attributes:
        accuracy: Fraction of correct predictions.
        loss: Mean test loss.
        confmat: (C, C) counts, rows actual, columns predicted.
        per_class: ``precision``, ``recall`` and ``f1``, (C,) each.
        class_names: C names.
    """

    accuracy: float
    loss: float
    confmat: torch.Tensor
    per_class: dict[str, torch.Tensor]
    class_names: list[str]

    @property
    def support(self) -> torch.Tensor:
        return self.confmat.sum(1)  # (C,) test images per actual class

    def macro(self) -> dict[str, float]:
        """Unweighted means over the classes, as torchmetrics' ``average="macro"``."""
        return {name: float(self.per_class[name].mean()) for name in METRICS}

    def summary(self) -> dict[str, float]:
        """The scalars of ``metrics.json``."""
        return {
            "test/acc": self.accuracy,
            "test/loss": self.loss,
            **{f"test/{name}_macro": value for name, value in self.macro().items()},
        }

    def per_class_rows(self) -> list[list[str]]:
        """Header, one row per class and the macro row: class, precision, recall, f1, support."""
        rows = [["class", *METRICS, "support"]]
        for i, name in enumerate(self.class_names):
            rows.append([name, *(f"{float(self.per_class[m][i]):.4f}" for m in METRICS), str(int(self.support[i]))])
        macro = self.macro()
        rows.append(["macro avg", *(f"{macro[m]:.4f}" for m in METRICS), str(int(self.support.sum()))])
        return rows

    def confusion_rows(self) -> list[list[str]]:
        """Header (``actual\\predicted`` and the class names), then one row of counts per actual class."""
        rows = [["actual\\predicted", *self.class_names]]
        for name, counts in zip(self.class_names, self.confmat.tolist(), strict=True):
            rows.append([name, *map(str, counts)])
        return rows

    def text(self) -> str:
        """The console report: accuracy and loss, per-class table, confusion matrix."""
        return "\n".join(
            [
                f"accuracy {self.accuracy:.4f}  loss {self.loss:.4f}",
                "",
                align(self.per_class_rows()),
                "",
                "confusion matrix (rows actual, columns predicted)",
                align(self.confusion_rows()),
            ]
        )

    def markdown(self) -> str:
        """Both tables as Markdown, for TensorBoard's text tab."""
        return markdown(self.per_class_rows()) + "\n\n" + markdown(self.confusion_rows())

    def write(self, folder: Path) -> None:
        """Writes ``confusion_matrix.csv`` and ``per_class.csv`` (the figure is drawn elsewhere).

        ``summary()`` goes into ``metrics.json`` through ``atomic_files.write_metrics``, by the caller.
        """
        write_atomic(folder / "confusion_matrix.csv", to_csv(self.confusion_rows()))
        write_atomic(folder / "per_class.csv", to_csv(self.per_class_rows()))


def align(rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def to_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()
