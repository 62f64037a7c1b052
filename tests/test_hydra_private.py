"""Every private name of Hydra that mnistlab uses exists on this Hydra release, and only one module uses them.

``hydra_plugins.mnistlab_sweeps.hydra_private`` is that module; when a release renames one, these tests
fail with its name instead of a sweep failing after its first job.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import hydra
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

import hydra_plugins.mnistlab_sweeps
import mnistlab
from hydra_plugins.mnistlab_sweeps import hydra_private
from hydra_plugins.mnistlab_sweeps.hydra_private import IN_PROCESS_LAUNCHER, basic_sweeper, job_exception, sweep_params

ROOT = Path(mnistlab.__file__).parents[2]


def test_hydras_private_names_resolve() -> None:
    fields = {f.name for f in dataclasses.fields(JobReturn)}
    assert "_return_value" in fields, f"hydra {hydra.__version__} renamed JobReturn._return_value"
    assert callable(getattr(basic_sweeper(), "_parse_config", None)), (
        f"hydra {hydra.__version__} renamed BasicSweeper._parse_config: update hydra_private.py"
    )


def test_a_failed_jobs_exception_and_a_completed_jobs_none() -> None:
    error = ValueError("the job's own error")
    assert job_exception(JobReturn(status=JobStatus.FAILED, _return_value=error)) is error
    assert job_exception(JobReturn(status=JobStatus.COMPLETED, _return_value=0.97)) is None


def test_the_sweep_params_read_as_overrides() -> None:
    sweeper = basic_sweeper()(max_batch_size=None, params=OmegaConf.create({"model": "linear,hidden", "seed": "1,2"}))
    assert sorted(sweep_params(sweeper)) == ["model=linear,hidden", "seed=1,2"]


def test_the_in_process_launcher_is_hydras_basic_launcher() -> None:
    from hydra import compose, initialize_config_dir

    from mnistlab.process.startup import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=basic"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == IN_PROCESS_LAUNCHER


def test_no_other_module_uses_hydras_private_api() -> None:
    pattern = re.compile(r"hydra\._internal|\._return_value\b|\._parse_config\b")
    users = {
        f"{path}: {m.group(0)}"
        for package in (mnistlab, hydra_plugins.mnistlab_sweeps)
        for path in Path(package.__file__).parent.rglob("*.py")
        if path != Path(hydra_private.__file__)
        for m in pattern.finditer(path.read_text())
    }
    assert not users, users


def test_the_grid_sweeper_is_built_after_hydras_plugin_scan_ran_its_modules_again() -> None:
    """Hydra's scan runs each loaded plugin module again in place, Hydra's own first: a class taken before
    the scan (a re-export) made GridSweeper a subclass of the old BasicSweeper, whose super() refused it."""
    import importlib

    from hydra._internal.core_plugins import basic_sweeper as core

    from hydra_plugins.mnistlab_sweeps import grid_sweeper

    importlib.reload(core)
    importlib.reload(grid_sweeper)
    assert grid_sweeper.GridSweeper(max_batch_size=None, params=None).max_batch_size is None


def test_the_joblib_launchers_logger_prints_its_job_lines_counted_from_0() -> None:
    """``JOBLIB_LAUNCHER_LOGGER`` is the logger of the module whose ``launch`` prints ``\\t#N : overrides``."""
    import importlib
    import inspect

    from hydra_plugins.mnistlab_sweeps.hydra_private import JOBLIB_LAUNCHER_LOGGER

    module = importlib.import_module(JOBLIB_LAUNCHER_LOGGER)
    assert module.log.name == JOBLIB_LAUNCHER_LOGGER, f"hydra-joblib-launcher moved its logger: {module.log.name}"
    assert '"\\t#{} : {}".format(idx' in inspect.getsource(module.launch), "its #N lines changed: see launchers.py"
