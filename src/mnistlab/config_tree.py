"""The config tree an entry script composes: its ``conf/`` and the folders of a command's ``hydra.searchpath``.

``mnistlab.command_line`` checks a command line against it before Hydra runs. Only Hydra's public API
is used (its config loader and compose API); a searchpath folder is read as files, since Hydra's
loader lists the groups of the script's own ``conf/`` only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

ABSENT = object()
# Keys that Hydra writes about a run (its choices, its logging's formatters, the overrides given): never a key a
# user means, so no suggestion names them (experment=cnn is not hydra.runtime.choices.experiment).
HYDRA_RECORDS = ("hydra.runtime.", "hydra.job_logging.", "hydra.hydra_logging.", "hydra.overrides.")


class ConfigTree:
    """Groups, options and composition of a script's configs, in an ``initialize_config_dir`` context.

    Args:
        searchpath: The command's ``hydra.searchpath`` override (its text), or None.
        folders: The searchpath's folders (``file://`` entries and plain paths).
    """

    def __init__(self, searchpath: str | None = None, folders: list[Path] | None = None) -> None:
        self.loader = GlobalHydra.instance().config_loader()
        self.searchpath = [searchpath] if searchpath else []
        self.folders = folders or []
        self._composed: dict[tuple[str, tuple[str, ...]], DictConfig] = {}

    def groups(self, parent: str) -> set[str]:
        """The config groups under ``parent`` (``""``: the top level, ``"hydra"``: Hydra's own)."""
        found = set(self.loader.list_groups(parent))
        for folder in (f / parent for f in self.folders):
            found |= {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
        return found

    def group_paths(self, parent: str = "") -> list[str]:
        """Every config group under ``parent``, nested ones as paths (``data/augment``, ``hydra/launcher``)."""
        found = []
        for group in sorted(self.groups(parent)):
            path = f"{parent}/{group}" if parent else group
            found += [path, *self.group_paths(path)]
        return found

    def options(self, group: str) -> list[str]:
        found = set(self.loader.get_group_options(group))
        for folder in self.folders:
            found |= {p.stem for p in (folder / group).glob("*.yaml")}
        return sorted(found)

    def compose(self, config_name: str, overrides: list[str]) -> DictConfig:
        """The config with Hydra's own node (``hydra.launcher.n_job=2`` is checked as any other key).

        Each config is composed once per tree (about 0.1 s each: a command of two ``~group`` removals composed
        the same two configs twice more each); a caller gets its own copy, which it may change.
        """
        key = (config_name, tuple(overrides))
        if key not in self._composed:
            self._composed[key] = compose(
                config_name, overrides=[*self.searchpath, *overrides], return_hydra_config=True
            )
        return copy.deepcopy(self._composed[key])

    def optional(self, config_name: str, group: str) -> bool:
        """Whether the config's defaults list leaves ``group`` unchosen (``scheduler: null``): runs go without it."""
        choices = self.compose(config_name, []).hydra.runtime.choices
        return group in choices and choices[group] is None

    def option_with(self, key: str, config_name: str, choices: list[str]) -> str | None:
        """A config group option whose config has ``key`` (``model.channels``: ``model=cnn``), or None.

        The group above the key is tried first; for Hydra's own keys the script's groups come first
        (``hydra.sweeper.n_trials``: ``hparams_search=optuna``, which sets the sweeper up, not the bare sweeper).
        """
        parts = key.split(".")
        above = [
            "/".join(parts[:i])
            for i in range(len(parts) - 1, 0, -1)
            if parts[i - 1] in self.groups("/".join(parts[: i - 1]))
        ]
        ours = sorted(self.groups("") - {"hydra"}) if parts[0] == "hydra" else []
        for group in [*ours, *above[:1]]:
            others = [c for c in choices if c.split("=", 1)[0].lstrip("+~") != group]
            for option in self.options(group):
                try:
                    cfg = self.compose(config_name, [*others, f"{group}={option}"])
                except HydraException:
                    continue
                if has_key(cfg, key):
                    return f"{group}={option}"
        return None


def scripts_with_key(conf: Path, config_name: str, key: str) -> list[str]:
    """The other entry scripts (``scripts/<name>.py`` of ``conf/<name>.yaml``) whose config has the top-level ``key``.

    For a setting given to the wrong script: ``train.py index=1`` is ``predict.py``'s. Their files are read, not
    composed: only the error path pays for it.
    """
    import yaml

    found = []
    for path in sorted(conf.glob("*.yaml")):
        script = conf.parent / "scripts" / f"{path.stem}.py"
        if path.stem != config_name and script.is_file() and key in (yaml.safe_load(path.read_text()) or {}):
            found.append(script.name)
    return found


def child(node: Any, key: str) -> Any:
    """``node[key]`` unresolved: ``ABSENT`` when there is no such key, None for a missing value or an interpolation."""
    if not isinstance(node, DictConfig) or not (key in node or OmegaConf.is_missing(node, key)):
        return ABSENT
    if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
        return None
    return node[key]


def all_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key under ``node`` (private ``_target_``-style keys left out)."""
    if isinstance(node, DictConfig):
        for key in node:
            if not str(key).startswith("_"):
                full = f"{prefix}{key}"
                yield full
                yield from all_keys(child(node, str(key)), f"{full}.")


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` exists in ``cfg``, read without resolving anything."""
    node: Any = cfg
    for part in key.split("."):
        node = child(node, part)  # never resolves: ${mnistlab.new_folder:...} would make a folder
        if node is ABSENT:
            return False
    return True
