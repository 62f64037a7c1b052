"""The one list of settings that say how or where a run goes, not what it trains; the other lists derive from it.

- Hydra leaves ``PLACEMENT`` out of a sweep job's folder name and the summary's overrides column
  (``exclude_keys: ${mnistlab.placement_keys:}`` in ``conf/hydra/default.yaml``), and the hyperparameter
  record (``mnistlab.hparams.run_hparams``) skips them, but for those a grid sweep varies
  (``hydra_plugins.mnistlab_sweeps.launchers.name_swept_placement`` narrows ``exclude_keys``).
- ``resume=RUN_DIR`` (``mnistlab.resume``) passes over ``PRESENTATION``: they change nothing a
  continued run computes.
"""

from __future__ import annotations

# How a run shows its progress and where it finds its data.
PRESENTATION = ("callbacks.progress_bar.refresh_rate", "paths.data_dir")
# The hardware a run takes: a killed sweep may continue on other hardware.
HARDWARE = ("trainer.accelerator", "trainer.devices", "trainer.num_nodes")
# Where a run reads and writes, on which hardware, and how short a check run is: jobs of a sweep that
# differ only in these are the same experiment.
PLACEMENT = (
    *PRESENTATION,
    "callbacks.optuna_pruning.trial",
    "paths.mlflow_dir",
    "logger",
    "logger.mlflow.tracking_uri",
    "data.root",
    "data.download",
    "ckpt_path",
    "resume",
    "hparams_search",
    *HARDWARE,
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
)


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+data.fold=1`` and ``~seed`` -> ``data.fold`` and ``seed``."""
    return override.split("=", 1)[0].lstrip("+~")


def path_override(key: str, path: object) -> str:
    """``key=path`` as Hydra reads it back: a path that Hydra's override grammar would not read as that same
    string goes in double quotes. That is one holding ``=`` or ``,`` (a sweep's job folder, such as
    ``3_cv=5,model=linear``), a space, a character outside the grammar's unquoted values (``#``, ``;``, ``~``,
    ``&``, a non-ASCII letter...), or one read as another type (``123``, ``null``)."""
    import re

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    text = str(path)
    try:
        if OverridesParser.create().parse_override(f"{key}={text}").value() == text:
            return f"{key}={text}"
    except HydraException:
        pass
    # In Hydra's quoted strings a backslash is literal, except before a quote or at the end: there a run of
    # them is doubled, and a quote takes one.
    escaped = re.sub(r'(\\*)("|$)', lambda m: m[1] * 2 + ("\\" + m[2] if m[2] else ""), text)
    return f'{key}="{escaped}"'


def shell_path_override(key: str, path: object) -> str:
    """``path_override`` as a shell command line gives it to the script (quoted where the shell would split it)."""
    import shlex

    return shlex.quote(path_override(key, path))


def placement_keys() -> list[str]:
    """Resolver ``${mnistlab.placement_keys:}``: ``PLACEMENT`` for Hydra's ``override_dirname.exclude_keys``."""
    return list(PLACEMENT)
