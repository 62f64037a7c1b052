"""Every use of LitServe's private API in mnistlab, in one module.

LitServe watches its inference workers from a thread that asks, every ``monitor_internal`` (2) seconds,
whether the server's shutdown event is set; the event lives in the server's multiprocessing manager. Its
graceful shutdown (after Ctrl+C or SIGTERM) terminates the workers and closes that manager without setting
the event, so the thread's next question fails on the closed connection and LitServe logs a traceback
(``Monitoring worker crashed ... ConnectionResetError``), or the thread takes the workers it just saw
terminated for dead ones and starts a second shutdown. Which of these happens depends on timing: a flaky
end of every server. ``LitServer`` below sets the event first and waits for the thread to see it.

Private names touched (``PRIVATE_NAMES`` lists them for ``tests/test_serve.py``, which fails with the name
when a LitServe release renames one):

- ``LitServer._perform_graceful_shutdown``: overridden, and called after the two steps below.
- ``LitServer._shutdown_event``: set (the thread's loop condition, and what ``LitServer.run`` waits on).
- ``MONITOR_THREAD``: the name LitServe gives its monitoring thread, found to be joined.
"""

from __future__ import annotations

import threading
from typing import Any

import litserve as ls

PRIVATE_NAMES: tuple[str, ...] = ("_perform_graceful_shutdown", "_shutdown_event")
MONITOR_THREAD = "litserve-monitoring"


class LitServer(ls.LitServer):
    """``litserve.LitServer`` whose shutdown stops its monitoring thread before it closes the manager."""

    def _perform_graceful_shutdown(self, manager: Any, uvicorn_workers: dict[str, Any], *args: Any) -> None:
        if self._shutdown_event is not None:
            # From a thread of its own: this thread's connection to the manager may still hold the
            # ``_shutdown_event.wait()`` a Ctrl+C interrupted, and the manager answers it only once the event is set.
            setter = threading.Thread(target=self._shutdown_event.set, name="mnistlab-shutdown", daemon=True)
            setter.start()
            setter.join(timeout=10)
            for thread in threading.enumerate():
                # The thread itself shuts down when a worker dies (it cannot join itself).
                if thread.name == MONITOR_THREAD and thread is not threading.current_thread():
                    thread.join(timeout=self.monitor_internal + 5)  # it sees the event after its sleep
        super()._perform_graceful_shutdown(manager, uvicorn_workers, *args)
