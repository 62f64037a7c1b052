"""Training callbacks: resumable checkpoints."""

from mnistlab.callbacks.checkpoints import LastCheckpoint

__all__ = ["LastCheckpoint"]
