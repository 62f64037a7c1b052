"""What is wrong with one override of a command line, judged against the config tree: one sentence each.

``command_line.config_mistake`` parses the command line and calls these for every override.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from mnistlab.config_checks import target_arguments
from mnistlab.config_tree import ABSENT, HYDRA_RECORDS, ConfigTree, all_keys, child, has_key
from mnistlab.setting_types import expected_types, flag_mistake, type_mistake
from mnistlab.spelling import nearest

SHOWN_KEYS = 10  # allowed keys listed in a message before "..."


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
    if dotted := _dotted_key(parent, parts[i:]):
        return _dotted_key_message(override, parts, i, dotted)
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
    suggestion = _suggested_key(cfg, parts, i, candidates, listed)
    where = "a top-level setting" if i == 0 else f"a setting of {parent.get('_target_', owner) or owner}"
    message = f"{key} is not {where}"
    if suggestion is not None:
        message += f"; did you mean {suggestion}?"
    if i > 0 or suggestion is None:
        message += f" (allowed: {_listing(candidates)})" if candidates else " (it takes no settings)"
    return message


def _dotted_key(parent: Any, rest: list[str]) -> str | None:
    """The key of ``parent`` that holds a dot and that ``rest`` spells split at its dots (``model.hidden_units``)."""
    keys = {str(k) for k in parent} if isinstance(parent, DictConfig) else set()
    return next((k for n in range(len(rest), 1, -1) if (k := ".".join(rest[:n])) in keys), None)


def _dotted_key_message(override: Override, parts: list[str], i: int, dotted: str) -> str:
    """``parts[i:]`` spells ``dotted``, a key with a dot: a mapping's keys reach it as given; nothing removes it."""
    key, owner = override.key_or_group, ".".join(parts[:i])
    why = f"{dotted} is one key of {owner}, and Hydra splits an override's key at its dots, whatever its spelling"
    if override.type is OverrideType.DEL:
        if owner == "hydra.sweeper.params":  # a search space: conf/hparams_search/ holds it
            fix = "search without it in a copy of conf/hparams_search/optuna.yaml (hparams_search=<the copy's name>)"
        else:
            fix = "leave it out in a copy of the config file that sets it"
        return f"~{key}: {why}, so no override removes it; {fix}"
    value = override.input_line.split("=", 1)[-1]
    for part in reversed(parts[i + dotted.count(".") + 1 :]):
        value = f"{{{part}:{value}}}"
    return f"{key}: {why}; give it in a mapping, which Hydra merges: '++{owner}={{{dotted}:{value}}}'"


def _suggested_key(cfg: DictConfig, parts: list[str], i: int, candidates: list[str], listed: list[str]) -> str | None:
    """The key nearest to ``parts`` with ``parts[i]`` unknown (``+`` before one the config does not list), or None."""
    close = nearest(parts[i], candidates)
    if close is not None:
        plus = "+" if close not in listed else ""
        return plus + ".".join([*parts[:i], close, *parts[i + 1 :]])
    if i > 0:
        return None
    # A key given without its group: the same name (or a near one) deeper down, never among Hydra's records.
    leaves = {k: k.rsplit(".", 1)[1] for k in all_keys(cfg) if "." in k and not k.startswith(HYDRA_RECORDS)}
    exact = [k for k, leaf in leaves.items() if leaf == parts[0]]
    near = nearest(parts[0], list(leaves.values()))
    found = exact or [k for k, leaf in leaves.items() if leaf == near]
    if not found:
        return None
    return ".".join([min(found, key=lambda k: (k.count("."), len(k))), *parts[1:]])


def _deletion_mistake(cfg: DictConfig, key: str, found: Any) -> str | None:
    """``~key`` of what the run cannot go without (before: an OmegaConf traceback at composition, exit 1).

    A top-level node the run builds (``~model``: its ``_target_``), or a setting another one refers to
    (``~seed``: ``data.seed`` is ``${seed}``). ``~callbacks.NAME`` and ``~logger`` leave out what is optional.
    """
    if "." not in key and isinstance(found, DictConfig) and isinstance(target := found.get("_target_"), str):
        return f"~{key} leaves the run without its {key} ({target}), which it needs: choose another with {key}=..."
    for user in _referring(OmegaConf.to_container(cfg, resolve=False), key):
        return f"~{key}: {user} refers to it, so the run could not read {user}; give {key} a value instead"
    return None


def removal_mistake(tree: ConfigTree, name: str, override: Override, choices: list[str]) -> str | None:
    """``~group=option`` of an optional group (``ConfigTree.optional``) that names an option the run does not
    choose (Hydra: "Could not delete ... No match in the defaults list", a traceback), else None.

    ``~scheduler`` removes whatever schedule was chosen (``experiment=cnn``'s too): a run without one, as
    ``scheduler=null``.
    """
    group, option = override.key_or_group, override.value()
    chosen = tree.compose(name, choices).hydra.runtime.choices.get(group)
    if option is None or str(option) == str(chosen):
        return None
    now = f"{group}={chosen if chosen is not None else 'null'}"
    alone = f"; ~{group} alone removes it" if chosen is not None else ""
    return f"{override.input_line}: the run chooses {now}, so there is no {group}={option} to remove{alone}"


def null_group_mistake(tree: ConfigTree, name: str, override: Override, choices: list[str]) -> str | None:
    """``group=null`` on the command line, which Hydra cannot take ("Config group override must be a string or a
    list. Got NoneType", a traceback, exit 1), else None. ``choices``: the command's other group choices.

    ``~group`` runs without the group where the run can go without it (``logger``, ``scheduler``); a group it needs
    (``model``) is told to choose an option.
    """
    if override.type is not OverrideType.CHANGE or override.is_sweep_override() or override.value() is not None:
        return None
    group = override.key_or_group
    needed = group.startswith("hydra/")  # Hydra's launcher, sweeper, ...
    if not needed and not tree.optional(name, group) and "/" not in group:
        cfg = tree.compose(name, choices)
        found = child(cfg, group)
        needed = found is not ABSENT and _deletion_mistake(cfg, group, found) is not None
    if needed:
        return f"{override.input_line}: the run needs a {group}; choose one: {', '.join(tree.options(group))}"
    return f"{override.input_line}: Hydra takes no null for a config group; give ~{group} to run without one"


def _referring(node: Any, key: str, prefix: str = "") -> Iterator[str]:
    """The dotted keys under ``node`` (a plain container) whose value interpolates ``key``: ``${key}``, ``${key.a}``."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _referring(value, key, f"{prefix}{name}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _referring(value, key, f"{prefix}{i}.")
    elif isinstance(node, str) and ("${" + key + "}" in node or "${" + key + "." in node):
        yield prefix.rstrip(".")


def values_of(override: Override) -> list[Any]:
    if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP):
        return list(override.sweep_iterator())
    if override.is_sweep_override():
        return []  # an interval or glob: its values are drawn later, only the key is checked
    return [override.value()]


def group_mistake(override: Override, options: list[str]) -> str | None:
    group = override.key_or_group
    for value in values_of(override):
        for option in value if isinstance(value, list) else [value]:
            if option is None or str(option) in options:
                continue
            close = nearest(str(option), options)
            hint = f"; did you mean {group}={close}?" if close else ""
            return f"{group}={option}: no such {group}{hint} ({', '.join(options)})"
    return None


def _value_mistake(cfg: DictConfig, override: Override) -> str | None:
    parts = override.key_or_group.split(".")
    adding = override.type in (OverrideType.ADD, OverrideType.FORCE_ADD)  # ++key=value adds what is absent, too
    node: Any = cfg
    for i, part in enumerate(parts):
        found = child(node, part)
        if found is ABSENT:
            if adding and i == len(parts) - 1:
                params = _target_parameters(node) if isinstance(node, DictConfig) else None
                if params is None:
                    top = [str(k) for k in cfg] if i == 0 else []
                    near = _suggested_key(cfg, parts, 0, top, top) if top else None
                    if near is not None and not near.startswith("hydra."):
                        # +seeds=1,2 beside seed: a key nothing reads, so every job would be the same run.
                        return _unknown_key(cfg, override, parts, i, node)
                    return None  # +key=value adds what the config lacks: Hydra's job
                if part in params:  # an argument the config lacks (+trainer.benchmark=...): typed as a change is
                    return _typed_mistake(node, part, override)
            elif adding:
                return None
            return _unknown_key(cfg, override, parts, i, node)
        if i < len(parts) - 1:
            node = found
    key = override.key_or_group
    if override.type is OverrideType.ADD:
        return f"+{key}: {key} is set already; give it without the +"
    if override.type is OverrideType.DEL:
        return _deletion_mistake(cfg, key, found)
    if override.type is OverrideType.CHANGE and key.startswith("hydra."):
        # Hydra's node is typed: its schema judges (hydra.verbose takes a bool, a logger's name or a list of them).
        for value in values_of(override):
            if isinstance(value, dict) and isinstance(found, DictConfig) and (new := value.keys() - found.keys()):
                # Hydra merges a mapping into its node, which refuses new keys ("not in struct", a traceback).
                return (
                    f"{key} has no {', '.join(sorted(map(str, new)))} yet: add to it with "
                    f"++{override.input_line.lstrip('+')}"
                )
            try:
                node[parts[-1]] = value
            except ValidationError as e:
                return f"{key}={value!r}: {str(e).splitlines()[0]}"
    elif override.type is OverrideType.CHANGE:
        settings = [str(k) for k in found if not str(k).startswith("_")] if isinstance(found, DictConfig) else []
        if settings and "_target_" in found and any(not isinstance(v, dict | None) for v in values_of(override)):
            give = f"give {key}.<setting>={override.input_line.split('=', 1)[1]}"  # Hydra: "Cannot instantiate", exit 1
            give += f", or {key}=null to drop it" if len(parts) == 2 and parts[0] in ("callbacks", "logger") else ""
            return f"{key} is a group of settings ({_listing(settings)}), not one value: {give}"
        return _typed_mistake(node, parts[-1], override)
    return None


def _typed_mistake(node: DictConfig, leaf: str, override: Override) -> str | None:
    """A value of ``override`` that ``node[leaf]`` does not take by its type (``setting_types``), else None."""
    key = override.key_or_group
    expected = expected_types(node, leaf)
    for value in values_of(override) if expected else []:
        # A flag first: it names its words (trainer.deterministic=[true] is not true, false or 'warn').
        if mistake := flag_mistake(node, leaf, key, value) or type_mistake(key, value, expected):
            return mistake
    return None


def values_mistake(cfg: DictConfig, values: list[Override]) -> tuple[Override, str] | None:
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


def added_group_mistake(tree: ConfigTree, name: str, groups: list[Override], choices: list[str]) -> str | None:
    """``+group=option`` for a group the defaults list chooses already (Hydra: "Multiple values for ...", exit 1)."""
    added = [o for o in groups if o.type in (OverrideType.ADD, OverrideType.FORCE_ADD)]
    if not added:
        return None
    others = [choice for o, choice in zip(groups, choices, strict=True) if o not in added]
    try:
        chosen = tree.compose(name, others).hydra.runtime.choices
    except HydraException:
        return None  # choices that clash: Hydra's message says how
    for o in added:
        group, plain = o.key_or_group, o.input_line.lstrip("+")
        if group in chosen:
            now = f"{group}={chosen[group] if chosen[group] is not None else 'null'}"
            return f"{o.input_line}: {group} is chosen by the config already ({now}); give it without the +: {plain}"
        if o.type is OverrideType.FORCE_ADD:
            return f"{o.input_line}: ++ does not add a config group; give +{plain}"
    return None


def group_as_a_key_mistake(tree: ConfigTree, cfg: DictConfig, override: Override) -> str | None:
    """A group's option given under a name that is no setting (``experment=cnn``, ``data.augment=affine``), or None.

    The key check alone would name the nearest setting, which for a group packaged at the top level
    (``experiment``) was Hydra's record of the choice, ``hydra.runtime.choices.experiment``.
    """
    key = override.key_or_group
    if "/" in key or override.type is OverrideType.DEL or has_key(cfg, key):
        return None
    paths = tree.group_paths()
    ends = [path.rsplit("/", 1)[-1] for path in paths]
    end = key if key in ends else nearest(key, ends)
    # data.augment=affine spells the group data/augment; "+data.augment=affine" handed the module a string.
    group = key.replace(".", "/") if "." in key else paths[ends.index(end)] if end is not None else None
    values = values_of(override)
    if group not in paths or not values or any(isinstance(v, list) or v is None for v in values):
        return None
    options = tree.options(group)
    fixed = [str(v) if str(v) in options else nearest(str(v), options) for v in values]
    if None in fixed:
        return None
    choice = f"{'' if group in cfg.hydra.runtime.choices else '+'}{group}={','.join(map(str, fixed))}"
    where = f"the group {group}, chosen with a /" if "." in key else "not a top-level setting"
    return f"{key} is {where}; did you mean {choice}? ({', '.join(options)})"
