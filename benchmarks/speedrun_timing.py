"""The mnistlab side of ``benchmarks/speedrun.py``: one timed run of a preset, and the table of all seeds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, open_dict
from timing import EpochTimer, machine

from mnistlab.atomic_files import write_json
from mnistlab.composition import compose
from mnistlab.training import fit_and_test


def _configured(cfg: DictConfig, seed: int, out: Path) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.seed, cfg.paths.output_dir = seed, str(out)
    return cfg


def time_mnistlab(cfg: DictConfig, seed: int, out: Path) -> tuple[float, float]:
    """Trains and tests ``cfg`` as ``scripts/train.py`` does; returns training seconds and test accuracy.

    The training time runs from the first epoch's start to the end of training (``EpochTimer``,
    added after the engine was chosen): reading the data onto the device, building the run and
    the test are outside it, as the record measures; validation, checkpoints and logging inside.
    """
    run = compose(_configured(cfg, seed, out))
    timer = EpochTimer()
    run.trainer.callbacks.append(timer)
    metrics = fit_and_test(run.trainer, run.system, run.datamodule, out)
    return timer.end[0] - timer.starts[0][0], metrics["test/acc"]


def warm_up(cfg: DictConfig, out: Path, steps: int) -> None:
    """Fits ``steps`` optimizer steps of ``cfg`` once, untimed: the kernels' one-time set-up."""
    cfg = _configured(cfg, 0, out)
    with open_dict(cfg):
        cfg.trainer.limit_train_batches = steps
    run = compose(cfg)
    run.trainer.fit(run.system, datamodule=run.datamodule)


@dataclass
class Results:
    """Training seconds and test accuracy of every pipeline and seed."""

    mnistlab: list[str]  # names of the mnistlab pipelines, after (r)
    rows: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)  # seed -> name -> (s, acc)

    @property
    def names(self) -> list[str]:
        return ["(r)", *self.mnistlab]

    def add(self, seed: int, name: str, seconds: float, acc: float) -> None:
        self.rows.setdefault(seed, {})[name] = (seconds, acc)

    def column(self, name: str, i: int) -> list[float]:
        return [row[name][i] for row in self.rows.values()]

    def ratio(self, name: str) -> float:
        """Median training time of ``name`` over the median of (r)."""
        return statistics.median(self.column(name, 0)) / statistics.median(self.column("(r)", 0))

    def paired_ratio(self, name: str) -> float:
        """Median over seeds of ``name``'s time over (r)'s time of the same seed (run side by side)."""
        return statistics.median(m / r for m, r in zip(self.column(name, 0), self.column("(r)", 0), strict=True))

    def table(self) -> str:
        """A Markdown table: one row per seed, then mean, min, std and median; the ratios below it."""
        head = " | ".join(f"{n} s | {n} acc" for n in self.names)
        lines = [f"| seed | {head} |", "| --- " * (1 + 2 * len(self.names)) + "|"]
        for seed, row in self.rows.items():
            lines.append(f"| {seed} | " + " | ".join(f"{row[n][0]:.2f} | {row[n][1]:.4f}" for n in self.names) + " |")
        std = statistics.stdev if len(self.rows) > 1 else lambda _: 0.0
        for label, fn in (("mean", statistics.fmean), ("min", min), ("std", std), ("median", statistics.median)):
            cells = " | ".join(f"{fn(self.column(n, 0)):.2f} | {fn(self.column(n, 1)):.4f}" for n in self.names)
            lines.append(f"| {label} | {cells} |")
        lines.append("")
        for n in self.mnistlab:
            ratios = f"{self.ratio(n):.2f}x of the median time ({self.paired_ratio(n):.2f}x seed by seed)"
            lines.append(f"{n} / (r): {ratios}")
        return "\n".join(lines)

    def write(self, path: Path, device: str) -> None:
        """The results and the machine as JSON."""
        seeds = {
            str(s): {n: {"seconds": v[0], "test_acc": v[1]} for n, v in row.items()} for s, row in self.rows.items()
        }
        ratios = {n: {"median": self.ratio(n), "seed_by_seed": self.paired_ratio(n)} for n in self.mnistlab}
        write_json(path, {"device": device, "machine": machine(), "seeds": seeds, "ratios": ratios})
