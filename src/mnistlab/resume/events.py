"""A resumed run's TensorBoard events: what the interrupted process logged after its checkpoint goes.

The restart marker (``SessionLog.START`` at the checkpoint's step, ``resume.loggers.mark_restart``) hides
those points from TensorBoard's Python loader, but its newer data server ignores it and shows the
killed process's points and the resumed run's for the same steps. The resumed run redoes that work
exactly, so the earlier event files are rewritten without it: each file keeps its name and every
event logged below the checkpoint's step; no file is deleted.
"""

from __future__ import annotations

import io
from pathlib import Path

from mnistlab.atomic_files import write_atomic
from mnistlab.run_folders import EVENT_FILES


def drop_events_from(log_dir: Path, step: int) -> list[Path]:
    """Rewrites each event file of ``log_dir`` that holds a summary logged at ``step`` or later without those.

    A file with nothing to drop (the resumed run's own new writer's, among others) is left untouched.

    Returns:
        The files rewritten.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    rewritten = []
    for path in sorted(log_dir.glob(EVENT_FILES)):
        records = list(RawEventFileLoader(str(path)).Load())
        events = [Event.FromString(record) for record in records]
        kept = [r for r, e in zip(records, events, strict=True) if not (e.HasField("summary") and e.step >= step)]
        if len(kept) == len(records):
            continue
        out = io.BytesIO()
        writer = RecordWriter(out)
        for record in kept:
            writer.write(record)
        write_atomic(path, out.getvalue())
        rewritten.append(path)
    return rewritten
