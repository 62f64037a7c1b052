"""Training callbacks: resumable checkpoints and a progress bar that counts batches under either engine."""

from mnistlab.callbacks.checkpoints import LastCheckpoint
from mnistlab.callbacks.progress import BatchProgressBar

__all__ = ["BatchProgressBar", "LastCheckpoint"]
