"""A quiet console: each log line once, and none of the library notices that ask nothing of the user."""

from __future__ import annotations

import logging
import warnings

# Warnings that say nothing the user can act on, matched by the start of their message.
IGNORED_WARNINGS = (
    # lightning/pytorch/utilities/_pytree.py on torch >= 2.9: Lightning's own use of a deprecated torch API.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # A run without validation (data.val_size=0) returns no validation batches on purpose.
    r"Total length of `list` across ranks is zero",
)
# Advertisements Lightning logs at INFO ("💡 Tip: ... try installing litlogger / litmodels").
TIP_PREFIX = "💡 Tip:"


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def quiet_console() -> None:
    """Drops Lightning's tips and known-harmless warnings, and prints each of its log lines once.

    ``import lightning`` gives the ``lightning`` logger a console handler of its own, while Hydra's
    handler on the root logger prints the same records again; Hydra's (console and log file) is kept.
    Idempotent.
    """
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    import lightning  # noqa: F401  (adds the handler removed below)

    root_has_handlers = bool(logging.getLogger().handlers)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if root_has_handlers:
            logger.handlers.clear()
            logger.propagate = True
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    # rank_zero_info logs through this logger; a filter on a parent logger does not see propagated records.
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoTips())
