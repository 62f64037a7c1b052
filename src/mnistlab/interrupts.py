"""A Ctrl-C during training, taken at the end of the training step it came in, so that ``last.ckpt`` holds that step.

The entry scripts' SIGINT handler (``mnistlab.process``) calls ``request_stop``. ``LastCheckpoint`` opens the
window for its fit; at the next end of a training step it saves ``last.ckpt`` and raises ``KeyboardInterrupt`` at
its next hook, once Lightning has logged that step, so Lightning's graceful shutdown and every callback's
``on_exception`` see the Ctrl-C as they always do. A Ctrl-C in the middle of an optimizer step would leave weights
half-updated, which no checkpoint may hold. Outside a window (a script starting, a test, a DDP fit, whose ranks
would stop at different steps) or at a second Ctrl-C, the handler raises at once, as Python's default does; without
the scripts' handler (a notebook) nothing changes.
"""

from __future__ import annotations

import threading

_window = threading.Event()  # a fit whose LastCheckpoint takes a Ctrl-C at a step's end is running
_requested = threading.Event()  # a Ctrl-C came in the window
_validating = threading.Event()  # the window's fit is validating: a Ctrl-C stops once the validation ends


def open_window() -> None:
    _requested.clear()
    _window.set()


def close_window() -> None:
    _window.clear()
    _requested.clear()
    _validating.clear()


def set_validating(validating: bool) -> None:
    """``LastCheckpoint`` marks its fit's validations, which a Ctrl-C lets end before it stops."""
    if validating:
        _validating.set()
    else:
        _validating.clear()


def validating() -> bool:
    return _validating.is_set()


def request_stop() -> bool:
    """For the SIGINT handler: True where the stop waits for the step's end (a first Ctrl-C in a window)."""
    if _window.is_set() and not _requested.is_set():
        _requested.set()
        return True
    return False


def stop_requested() -> bool:
    return _requested.is_set()
