"""An entry script's command line checked against its config tree before Hydra runs: one line per mistake.

Hydra answers a misspelled key or option with a block of six to nine lines that ends in its own
internals and, for a key, advises ``+key=...``, which only leads to a second error. Here every
override of the command line (each value of a multirun's sweeps too) is checked before the first
job starts, and the first mistake comes back as one sentence with the fix:

- an unknown key, at any depth: the nearest key within edit distance 2, or the same key under
  another group (``max_epochs`` -> ``trainer.max_epochs``);
- an argument of a ``_target_`` that its config does not list yet: ``+key=value`` is the fix;
- an unknown option of a config group: the nearest option and the list of them;
- a value of the wrong type for a setting whose type is known (an ``int``, ``float`` or ``bool``
  in the config or in the annotation of its ``_target_``'s argument).

Only Hydra's public API is used (its override parser, its compose API and its config loader).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from mnistlab.config_checks import target_arguments
from mnistlab.config_keys import shell_path_override
from mnistlab.config_tree import ABSENT, ConfigTree, all_keys, child, has_key
from mnistlab.extras import GROUP_EXTRAS, missing_extra
from mnistlab.run_folders import folder_mistake
from mnistlab.setting_types import expected_types, type_mistake
from mnistlab.spelling import nearest

SHOWN_KEYS = 10  # allowed keys listed in a message before "..."
# Flags after which the command only shows something (help, the config): nothing is run, nothing checked.
SHOW_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
FLAGS_WITH_VALUE = {
    "--config-path": "path", "-cp": "path", "--config-name": "name", "-cn": "name",
    "--config-dir": "dir", "-cd": "dir", "--package": "package", "-p": "package",
}  # fmt: skip


def _listing(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_KEYS]) + (", ..." if len(names) > SHOWN_KEYS else "")


def _target_parameters(node: DictConfig) -> dict[str, inspect.Parameter] | None:
    """The arguments of the node's ``_target_`` (None: no target, or one that takes ``**kwargs``)."""
    target = node.get("_target_") if "_target_" in node else None
    params = target_arguments(target) if isinstance(target, str) else None
    return None if params is None else {k: p for k, p in params.items() if k not in ("self", "params")}


def _unknown_key(cfg: DictConfig, override: Override, parts: list[str], i: int, parent: Any) -> str:
    """The message for ``parts[i]``, absent under ``parent`` (the node at ``parts[:i]``)."""
    key, bad, value = ".".join(parts), parts[i], override.input_line.split("=", 1)[-1]
    owner = ".".join(parts[:i])
    params = _target_parameters(parent) if isinstance(parent, DictConfig) else None
    listed = [str(k) for k in parent if not str(k).startswith("_")] if isinstance(parent, DictConfig) else []
    if params is not None and bad in params and i == len(parts) - 1:
        return f"{key} is not in the config of {parent._target_}; add it with +{key}={value}"
    if not isinstance(parent, DictConfig):
        return f"{owner} is a value, not a group of settings: {key} does not exist"
    if not listed and not params and "_target_" not in parent:  # an open mapping (hydra.job.env_set)
        return f"{key} is not in the config yet; add it with +{key}={value}"
    if bad in (params or {}) and bad not in listed:  # an argument its config leaves unset (data.augment)
        return f"{key}: {owner}.{bad} is not set in the config"
    candidates = listed + [p for p in (params or {}) if p not in listed]
    close = nearest(bad, candidates)
    suggestion = None
    if close is not None:
        plus = "+" if close not in listed else ""
        suggestion = plus + ".".join([*parts[:i], close, *parts[i + 1 :]])
    elif i == 0:  # a key given without its group: the same name (or a near one) deeper down
        leaves = {k: k.rsplit(".", 1)[1] for k in all_keys(cfg) if "." in k}
        exact = [k for k, leaf in leaves.items() if leaf == bad]
        near = nearest(bad, list(leaves.values()))
        found = exact or [k for k, leaf in leaves.items() if leaf == near]
        if found:
            best = min(found, key=lambda k: (k.count("."), len(k)))
            suggestion = ".".join([best, *parts[1:]])
    where = "a top-level setting" if i == 0 else f"a setting of {parent.get('_target_', owner) or owner}"
    message = f"{key} is not {where}"
    if suggestion is not None:
        message += f"; did you mean {suggestion}?"
    if i > 0 or suggestion is None:
        message += f" (allowed: {_listing(candidates)})" if candidates else " (it takes no settings)"
    return message


def _values(override: Override) -> list[Any]:
    if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP):
        return list(override.sweep_iterator())
    if override.is_sweep_override():
        return []  # an interval or glob: its values are drawn later, only the key is checked
    return [override.value()]


def _group_mistake(override: Override, options: list[str]) -> str | None:
    group = override.key_or_group
    for value in _values(override):
        for option in value if isinstance(value, list) else [value]:
            if option is None or str(option) in options:
                continue
            close = nearest(str(option), options)
            hint = f"; did you mean {group}={close}?" if close else ""
            return f"{group}={option}: no such {group}{hint} ({', '.join(options)})"
    return None


def _value_mistake(cfg: DictConfig, override: Override) -> str | None:
    parts = override.key_or_group.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        found = child(node, part)
        if found is ABSENT:
            if override.type is OverrideType.ADD and i == len(parts) - 1:
                params = _target_parameters(node) if isinstance(node, DictConfig) else None
                if params is None or part in params:
                    return None  # +key=value adds what the config lacks: Hydra's job
            elif override.type is OverrideType.ADD:
                return None
            return _unknown_key(cfg, override, parts, i, node)
        if i < len(parts) - 1:
            node = found
    key = override.key_or_group
    if override.type is OverrideType.ADD:
        return f"+{key}: {key} is set already; give it without the +"
    if override.type is OverrideType.CHANGE and key.startswith("hydra."):
        # Hydra's node is typed: its schema judges (hydra.verbose takes a bool, a logger's name or a list of them).
        for value in _values(override):
            try:
                node[parts[-1]] = value
            except ValidationError as e:
                return f"{key}={value!r}: {str(e).splitlines()[0]}"
    elif override.type is OverrideType.CHANGE:
        expected = expected_types(node, parts[-1])
        for value in _values(override) if expected else []:
            if mistake := type_mistake(key, value, expected):
                return mistake
    return None


def _unchosen_group(script: Path, config_name: str, groups: list[Override]) -> str | None:
    """A group option given to a config whose defaults list does not choose that group (``evaluate.py data=...``)."""
    keys = list(compose(config_name, return_hydra_config=True).hydra.runtime.choices)
    chosen = {key.split("@")[0] for key in keys}
    for o in groups:
        if o.type is OverrideType.CHANGE and o.key_or_group not in chosen:
            if o.key_or_group == "data" and "checkpoint_data" in chosen:
                return (f"{o.input_line}: {script.name} takes the dataset from the checkpoint; drop it "
                        "(data.root=... reads the same dataset from another folder)")  # fmt: skip
            # Groups a user may choose: not Hydra's own, not one mounted elsewhere (checkpoint_data@data).
            takes = ", ".join(sorted(k for k in keys if "/" not in k and "@" not in k and k != "hydra"))
            return f"{o.input_line}: {script.name} has no {o.key_or_group} to choose (its groups: {takes}); drop it"
    return None


def _overrides(args: list[str]) -> tuple[list[str], dict[str, str]] | None:
    """The overrides and the value flags of ``args``; None when the command only shows something."""
    overrides, flags, i = [], {}, 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if name in SHOW_FLAGS:
            return None
        if name in FLAGS_WITH_VALUE:
            given = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            flags[FLAGS_WITH_VALUE[name]] = given
            i += 1 if "=" in arg else 2
            continue
        if not arg.startswith("-"):
            overrides.append(arg)
        i += 1
    return overrides, flags


def _several_values(overrides: list[Override], config_name: str) -> str | None:
    """A sweep's values outside a multirun (Hydra's answer: four lines about ambiguity, exit 1)."""
    for o in overrides:
        if not o.is_sweep_override() or o.key_or_group.startswith("hydra"):
            continue
        line = o.input_line.lstrip("+")
        key, value = line.split("=", 1)
        if config_name == "train":
            listed = f" ({key}=[{value}] is a list)" if o.value_type == ValueType.SIMPLE_CHOICE_SWEEP else ""
            return f"{line} gives several values: add -m to run one job per value{listed}"
        if key == "ckpt_path" and o.value_type == ValueType.SIMPLE_CHOICE_SWEEP:  # an ensemble
            return f"{line} gives several values: {key}=[{value}] is one list"
        return f"{line} gives several values, but {key} takes one"
    return None


def config_mistake(script: Path, config_name: str, args: list[str]) -> str | None:
    """The first mistake of a script's command line, as one sentence, or None.

    Args:
        script: The entry script (its ``conf/`` is ``../conf`` from it, as its ``hydra.main`` says).
        config_name: The script's primary config (``train``, ``evaluate``, ...).
        args: The command line after the script's name (``sys.argv[1:]``).
    """
    parsed = _overrides(args)
    if parsed is None:
        return None
    strings, flags = parsed
    if "dir" in flags or "package" in flags:
        return None  # another search path or package: Hydra's own checks apply
    conf = Path(flags.get("path") or script.parent.parent / "conf")
    conf = conf if conf.is_absolute() else script.parent / conf
    parser, overrides = OverridesParser.create(), []
    for text in strings:  # one at a time, so that a parse error names its override
        try:
            overrides += parser.parse_overrides([text])
        except OverrideParseException as e:
            reason = str(e).splitlines()[0]
            key, _, value = text.partition("=")
            if "=" in value:  # a path holding = and , as a sweep's job folders do: Hydra needs it in quotes
                quoted = f'\'{key}=["...","..."]\'' if value.startswith("[") else shell_path_override(key, value)
                return f"cannot read the override {text!r}: {reason}; a path with = in it goes in quotes: {quoted}"
            return f"cannot read the override {text!r}: {reason} (key=value, see hydra.cc's override grammar)"
    swept: dict[str, str] = {}
    for o in overrides:  # Hydra takes the last value: a sweep's list given before it was dropped without a word
        if o.key_or_group in swept and not o.key_or_group.startswith("hydra"):
            return f"{swept[o.key_or_group]} is replaced by {o.input_line}, given after it: give {o.key_or_group} once"
        if o.is_sweep_override():
            swept[o.key_or_group] = o.input_line
    for o in overrides:  # Hydra would make it only as the job starts, and fail with a traceback
        folder = str(o.value()) if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir") else "${"
        if "${" not in folder and (mistake := folder_mistake(folder)):
            return f"{o.input_line}: {mistake}"
        if o.key_or_group == "paths.output_dir":  # Hydra's records would stay in outputs/, and resume= fail
            return f"{o.input_line}: the run's folder is Hydra's; give hydra.run.dir=... (hydra.sweep.dir=... with -m)"
    multirun = {"-m", "--multirun"} & set(args) or any(o.key_or_group == "hydra.mode" for o in overrides)
    placed = {"hydra.run.dir", "hydra.sweep.dir", "resume"} & {o.key_or_group for o in overrides}
    root = "multirun" if multirun else "outputs"  # train.py's default folders, made in the launch folder
    if config_name == "train" and not placed and (mistake := folder_mistake(root)):
        where = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        return f"{mistake} (where {root}/ goes): launch from a writable folder or give {where}=..."
    if not multirun and (mistake := _several_values(overrides, config_name)):
        return mistake
    for o in overrides:  # a feature of an optional extra: the install line, before anything else
        values = _values(o) if o.key_or_group in {group for group, _ in GROUP_EXTRAS} else []
        for value in [v for choice in values for v in (choice if isinstance(choice, list) else [choice])]:
            if (o.key_or_group, str(value)) in GROUP_EXTRAS:
                modules, extra = GROUP_EXTRAS[o.key_or_group, str(value)]
                if message := missing_extra(f"{o.key_or_group}={value}", extra, *modules):
                    return message
    if any(o.package for o in overrides):
        return None  # a package override (group@pkg): Hydra's checks apply
    if not overrides:
        return None
    searchpath = next((o for o in overrides if o.key_or_group == "hydra.searchpath"), None)
    folders = _searchpath_folders(searchpath.value()) if searchpath else []
    if folders is None:
        return None  # a package or another scheme: Hydra's checks apply
    if missing := [f for f in folders if not f.is_dir()]:
        return f"{searchpath.input_line}: {missing[0]} is not a folder"
    overrides = [o for o in overrides if o is not searchpath]
    with initialize_config_dir(str(conf.resolve()), version_base="1.3"):
        tree = ConfigTree(searchpath.input_line if searchpath else None, folders)
        groups, values = [], []
        for o in overrides:
            parent, _, leaf = o.key_or_group.rpartition("/")
            is_group = o.type is not OverrideType.DEL and leaf in tree.groups(parent)
            (groups if is_group else values).append(o)
        for o in groups:
            if mistake := _group_mistake(o, tree.options(o.key_or_group)):
                return mistake
        if not values:
            return None
        # The tree of the chosen options (a sweep's first); the value overrides are checked against it.
        choices = [
            f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in groups
        ]
        name = flags.get("name") or config_name
        try:
            cfg = tree.compose(name, choices)
        except HydraException:  # a group this config never chooses, or choices that clash (Hydra's message says how)
            return _unchosen_group(script, name, groups)
        found = _values_mistake(cfg, values)
        if found is None:
            return None
        o, mistake = found
        if not has_key(cfg, o.key_or_group) and (other := tree.option_with(o.key_or_group, name, choices)):
            mistake += f"; {other} has it"
        return mistake


def _searchpath_folders(entries: Any) -> list[Path] | None:
    """The folders of ``hydra.searchpath`` (``file://`` entries or plain paths); None if it names a package."""
    folders = []
    for entry in entries if isinstance(entries, list) else [entries]:
        scheme, _, rest = str(entry).rpartition("://")
        if scheme not in ("", "file"):
            return None
        folders.append(Path(rest).expanduser())
    return folders


def _values_mistake(cfg: DictConfig, values: list[Override]) -> tuple[Override, str] | None:
    """The first value override that ``cfg`` (the tree of the chosen options) refuses, and why."""
    # A class chosen on the command line decides which arguments its node takes: changed ones first, added
    # ones (+node._target_=...) once their own check has passed.
    targets = [o for o in values if o.key_or_group.endswith("_target_") and not o.is_sweep_override()]
    for o in targets:
        if o.type is OverrideType.CHANGE:
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    for o in values:
        if mistake := _value_mistake(cfg, o):
            return o, mistake
        if o in targets and o.type is not OverrideType.CHANGE and o.type is not OverrideType.DEL:
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    return None


def exit_on_mistake(script: str, config_name: str) -> None:
    """For an entry script's ``__main__``: prints the command line's first mistake and exits with 2."""
    if mistake := config_mistake(Path(script).resolve(), config_name, sys.argv[1:]):
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
