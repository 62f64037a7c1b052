"""A continued run's loggers: what the interrupted process logged after its checkpoint goes (``mark_restart``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger as CSVLoggerType


def mark_restart(trainer: pl.Trainer, ckpt_path: str | None) -> None:
    """Tells the loggers that a continued run restarts at its checkpoint's ``global_step``.

    A killed run may have logged past its last checkpoint. The resumed run appends to the
    same folder:
    - TensorBoard drops every event at a step from ``step`` on that came before a restart
      marker (``SummaryWriter(purge_step=...)`` writes the same marker, but to every new
      writer, and Lightning opens a new one for ``trainer.test``); its newer data server does not,
      so those events are also taken out of the earlier event files (``resume.events``);
    - Lightning's CSV logger deletes ``metrics.csv`` as it opens; its rows below ``step`` are
      written back through the logger (``_keep_csv_rows``).
    So each step appears once and the curves stay continuous. A no-op for a new run and off rank zero.
    """
    if ckpt_path is None or not trainer.is_global_zero:
        return
    from lightning.pytorch.loggers import CSVLogger
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    from mnistlab.checkpoints import read_checkpoint
    from mnistlab.lightning_private import file_writer
    from mnistlab.resume.events import drop_events_from
    from mnistlab.tb_writers import tensorboard_writers

    # Batch b is logged at step b, so what the checkpoint holds was logged below ``step``.
    step = int(read_checkpoint(ckpt_path).get("global_step", 0))
    marker = Event(step=step, session_log=SessionLog(status=SessionLog.START))
    for writer in tensorboard_writers(trainer):
        drop_events_from(Path(writer.log_dir), step)  # TensorBoard's data server ignores the marker
        file_writer(writer).add_event(marker)  # torch's SummaryWriter has no public way to add an event
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            _keep_csv_rows(logger, step)


def _keep_csv_rows(logger: CSVLoggerType, step: int) -> None:
    """Writes the rows of the logger's ``metrics.csv`` logged below ``step`` back after Lightning deletes the file."""
    import csv
    import warnings

    path = Path(logger.log_dir) / "metrics.csv"
    if not path.parent.is_dir():
        return
    rows = []
    if path.is_file():
        with path.open(newline="") as file:
            rows = [row for row in csv.DictReader(file) if int(float(row["step"])) < step]
    with warnings.catch_warnings():  # its warning says the rows are lost; they are not (or there were none)
        warnings.filterwarnings("ignore", message="Experiment logs directory .* is not empty")
        writer = logger.experiment  # opening the writer deletes the file, before the rows go back
    for row in rows:
        values = {key: _number(value) for key, value in row.items() if key != "step" and value not in ("", None)}
        writer.log_metrics(values, int(float(row["step"])))  # the writer's: the names already hold any prefix
    logger.save()  # now: a second kill before the next flush must not lose them


def _number(text: str) -> float:
    """A CSV cell as Lightning wrote it: ``epoch`` stays an integer (``3``, not ``3.0``)."""
    return int(text) if text.lstrip("-").isdigit() else float(text)
