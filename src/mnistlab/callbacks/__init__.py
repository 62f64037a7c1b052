"""Training callbacks: resumable checkpoints, time to a target accuracy, a sweep job's progress."""

from mnistlab.callbacks.checkpoints import LastCheckpoint
from mnistlab.callbacks.job_progress import JobProgress
from mnistlab.callbacks.time_to_target import TimeToTarget

__all__ = ["JobProgress", "LastCheckpoint", "TimeToTarget"]
