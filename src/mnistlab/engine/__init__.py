"""The training engine: which loop a run takes, and everything the fast one needs.

- **per_step**: Lightning's own loop, one Lightning step and one optimizer step per batch,
  automatic optimization. Every Trainer flag and callback means what Lightning documents.
- **chunked**: one Lightning step runs a chunk of consecutive batches (manual optimization,
  one optimizer step each), which makes a small network train about as fast as a
  hand-written loop; on a GPU the optimizer step is recorded once as a CUDA graph where that
  is exact. Logging, validation, checkpoints and the progress bar count batches as per-step.

``choose_engine`` decides from the built Trainer (``choice``) and returns an ``Engine``, with
which the data module (``Engine.batches``) and the system (``Engine.fast_path``) are built.
Inside: ``chunks`` (the chunks and the step over them), ``step`` (the one optimizer step),
``graph`` (its CUDA graph), ``progress`` (the progress bar).
"""

from mnistlab.engine.choice import ENGINES, Engine, choose_engine
from mnistlab.engine.progress import BatchProgressBar

__all__ = ["ENGINES", "BatchProgressBar", "Engine", "choose_engine"]
