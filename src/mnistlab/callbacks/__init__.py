"""Training callbacks: resumable checkpoints, time to a target accuracy."""

from mnistlab.callbacks.checkpoints import LastCheckpoint
from mnistlab.callbacks.time_to_target import TimeToTarget

__all__ = ["LastCheckpoint", "TimeToTarget"]
