"""A sweep stopped by a Ctrl-C or a SIGTERM: the HParams columns of its finished jobs, and the line that continues it.

The sweep's HParams columns (``mnistlab.sweeps.hparams_columns``) are written when it ends, and its jobs write
none of their own; a sweep that ends interrupted writes them too, else TensorBoard showed its finished jobs
without hyperparameters until the continued sweep completed. The continued sweep writes them again, over these.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from omegaconf import DictConfig

from mnistlab import process
from mnistlab.user_errors import one_line

log = logging.getLogger(__name__)


def write_hparams_columns(sweep_dir: Path) -> None:
    """The sweep's HParams columns (``mnistlab.sweeps.hparams_columns``); a failure costs only the HParams tab."""
    from mnistlab.hparams import SUMMARY_METRICS
    from mnistlab.sweeps.hparams_columns import write_columns

    try:
        write_columns(sweep_dir, SUMMARY_METRICS)
    except Exception as exc:  # the jobs' results and the summary stand
        log.warning("could not write the sweep's HParams columns: %s", exc)
        print(f"warning: TensorBoard's HParams tab: {one_line(exc)}", file=sys.stderr)


def continue_hint(config: DictConfig, search: bool = False) -> str:
    """The line a Ctrl-C on a sweep ends with (``mnistlab.process.hint_on_interrupt`` prints it).

    Args:
        config: The sweep's config.
        search: An Optuna search, whose interrupted trial is tried again from its start, not resumed.
    """
    from mnistlab.config_keys import shell_path_override

    interrupted = "the interrupted trial runs again" if search else "interrupted ones resume from their last checkpoint"
    folder = shell_path_override("hydra.sweep.dir", config.hydra.sweep.dir)  # as a shell reads it back
    return f"interrupted; continue with the same command plus {folder} (finished jobs are kept, {interrupted})"


@contextmanager
def ending_interrupted(config: DictConfig, search: bool = False) -> Iterator[None]:
    """Around a sweep's work in its own process: a Ctrl-C or a SIGTERM ends it (``process.hint_on_interrupt``: the
    status, no traceback) with the HParams columns of the jobs that finished and ``continue_hint``'s line; so
    does a joblib worker that died (``error: ...``, status 1).

    Args:
        config: The sweep's config.
        search: An Optuna search (``continue_hint``).
    """

    def ending() -> str:
        with suppress(KeyboardInterrupt):  # a second Ctrl-C: stop now; the continued sweep writes the columns
            write_hparams_columns(Path(config.hydra.sweep.dir))
        return continue_hint(config, search)

    try:
        with process.hint_on_interrupt(ending):
            yield
    except Exception as exc:
        if type(exc).__name__ != "TerminatedWorkerError":  # joblib's (loky); joblib is imported only if it launched
            raise
        # A worker killed (the out-of-memory killer, kill -9) or crashed: joblib stops every worker and raised
        # a traceback. The jobs' checkpoints stand, so the sweep continues as after a Ctrl-C.
        codes = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
        going_on = ending().removeprefix("interrupted; ")  # the HParams columns written, then the continue line
        print(
            f"error: a joblib worker died while it ran this sweep's jobs (exit code {codes[1] if codes else '?'}: "
            f"killed, e.g. for lack of memory, or crashed); {going_on}",
            file=sys.stderr,
        )
        sys.exit(1)
