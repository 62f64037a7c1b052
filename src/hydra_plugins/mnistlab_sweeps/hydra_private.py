"""Every use of Hydra's private API, in one module (hydra-core 1.3, which ``pyproject.toml`` pins).

- ``hydra._internal.core_plugins.basic_sweeper.BasicSweeper`` (and its ``BasicSweeperConf``): the grid
  sweeper is Hydra's own basic sweeper with a new ``sweep``, so every grid setting keeps its meaning
  (``basic_sweeper``, ``basic_sweeper_conf``).
- ``BasicSweeper._parse_config``: the sweep's ``hydra.sweeper.params`` as override strings, as the basic
  sweeper reads them.
- ``JobReturn._return_value``: a failed job's exception. The public ``return_value`` logs Hydra's
  "Error executing job" and raises it, which a sweep that goes on after a failure must not do.
- ``hydra_plugins.hydra_joblib_launcher._core``: the joblib launcher's module, whose logger (its ``__name__``)
  prints each launch's ``#N : overrides`` lines, counted from 0 in each launch (``JOBLIB_LAUNCHER_LOGGER``).
- ``hydra._internal.core_plugins.basic_launcher.BasicLauncher``: the sequential launcher's class path,
  the ``_target_`` of ``hydra/launcher=basic``, which runs the jobs in the sweep's own process.

``tests/test_hydra_private.py`` resolves each on the installed Hydra and fails with its name when a
release renames it.
"""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins import basic_sweeper as _basic_sweeper
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus

IN_PROCESS_LAUNCHER = f"{BasicLauncher.__module__}.{BasicLauncher.__qualname__}"
# Not imported here: hydra-joblib-launcher is an optional extra.
JOBLIB_LAUNCHER_LOGGER = "hydra_plugins.hydra_joblib_launcher._core"

__all__ = [
    "IN_PROCESS_LAUNCHER",
    "JOBLIB_LAUNCHER_LOGGER",
    "basic_sweeper",
    "basic_sweeper_conf",
    "job_exception",
    "sweep_params",
]


def basic_sweeper() -> type:
    """Hydra's ``BasicSweeper`` as its module holds it now, to subclass.

    Hydra's plugin scan runs its modules again in place: a class taken from one before the scan is
    another object than the one its own ``super(BasicSweeper, self)`` names, which then refuses it.
    """
    return _basic_sweeper.BasicSweeper


def basic_sweeper_conf() -> type:
    """Hydra's ``BasicSweeperConf`` as its module holds it now (see ``basic_sweeper``)."""
    return _basic_sweeper.BasicSweeperConf


def job_exception(job_return: JobReturn) -> BaseException | None:
    """The exception a job ended with; None for a job that completed."""
    if job_return.status == JobStatus.COMPLETED:
        return None
    return job_return._return_value


def sweep_params(sweeper: Any) -> list[str]:
    """``hydra.sweeper.params`` of ``sweeper``'s config as overrides (``key=v1,v2``)."""
    return sweeper._parse_config()
