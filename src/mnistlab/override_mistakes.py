"""What is wrong with one key or value override of a command line, judged against the config tree: one sentence each.

``command_line.config_mistake`` parses the command line and calls these for every value override (``key=value``,
``+key``, ``~key``); a config group's option is judged by ``group_mistakes``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ValidationError

from mnistlab.config_checks import target_arguments
from mnistlab.config_tree import ABSENT, HYDRA_RECORDS, all_keys, child
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
    if len(parts) > 1 and parts[-1] in listed:  # predict.py trainer.accelerator=cpu: its accelerator is top-level
        return parts[-1]
    # A key given without its group: the same name (or a near one) deeper down, never among Hydra's records.
    leaves = {k: k.rsplit(".", 1)[1] for k in all_keys(cfg) if "." in k and not k.startswith(HYDRA_RECORDS)}
    exact = [k for k, leaf in leaves.items() if leaf == parts[0]]
    near = nearest(parts[0], list(leaves.values()))
    found = exact or [k for k, leaf in leaves.items() if leaf == near]
    if not found:
        return None
    return ".".join([min(found, key=lambda k: (k.count("."), len(k))), *parts[1:]])


def deletion_mistake(cfg: DictConfig, key: str, found: Any) -> str | None:
    """``~key`` of what the run cannot go without (before: an OmegaConf traceback at composition, exit 1).

    A top-level node the run builds (``~model``: its ``_target_``), or a setting another one refers to
    (``~seed``: ``data.seed`` is ``${seed}``). ``~callbacks.NAME`` and ``~logger`` leave out what is optional.
    """
    if "." not in key and isinstance(found, DictConfig) and isinstance(target := found.get("_target_"), str):
        return f"~{key} leaves the run without its {key} ({target}), which it needs: choose another with {key}=..."
    for user in _referring(OmegaConf.to_container(cfg, resolve=False), key):
        return f"~{key}: {user} refers to it, so the run could not read {user}; give {key} a value instead"
    return None


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
        return deletion_mistake(cfg, key, found)
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


def _rebuilt(gone: str, later: list[Override]) -> bool:
    """Whether one of ``later`` gives ``gone``, which a ``~gone`` removes, a class anew (``+gone._target_``)."""
    return any(o.key_or_group == f"{gone}._target_" and o.type is not OverrideType.DEL for o in later)


def _removed_then_set(cfg: DictConfig, values: list[Override]) -> tuple[Override, str] | None:
    """A value override of a key that a ``~key`` of the same command removes, and why the two contradict.

    Given after the removal, Hydra found no key to set ("Key 'time_to_target' is not in struct", a traceback);
    given before it, the value was dropped without a word. ``+key.x=...`` after ``~key`` is the same contradiction
    (it said "key.x is set already; give it without the +", whose fix led here), unless the command gives the
    removed node a class anew (``+key._target_=...``): then it builds a new node, judged as any other addition.
    """
    for i, removal in enumerate(values):
        if removal.type is not OverrideType.DEL:
            continue
        gone = removal.key_or_group
        after = values[i + 1 :]
        rebuilt = _rebuilt(gone, after)
        for j, o in enumerate(values):
            under = o.key_or_group == gone or o.key_or_group.startswith(f"{gone}.")
            if not under or o.type is OverrideType.DEL or (j > i and o.type is not OverrideType.CHANGE and rebuilt):
                continue
            what, kept = (gone, "value") if o.key_or_group == gone else (f"a setting of {gone}", "setting")
            keep = f"drop {removal.input_line}"
            if o.type is OverrideType.ADD and OmegaConf.select(cfg, o.key_or_group, default=ABSENT) is not ABSENT:
                keep += f" and give {o.input_line[1:]}"  # the key is there once nothing removes it: + is refused
            return o, (
                f"{o.input_line} sets {what}, which {removal.input_line} removes: the two contradict each other; "
                f"{keep} to keep {gone} with that {kept}, or {o.input_line} to run without it"
            )
    return None


def values_mistake(cfg: DictConfig, values: list[Override]) -> tuple[Override, str] | None:
    """The first value override that ``cfg`` (the tree of the chosen options) refuses, and why."""
    if contradiction := _removed_then_set(cfg, values):
        return contradiction
    # A class chosen on the command line decides which arguments its node takes: changed ones first, added
    # ones (+node._target_=...) once their own check has passed.
    targets = [o for o in values if o.key_or_group.endswith("_target_") and not o.is_sweep_override()]
    for o in targets:
        if o.type is OverrideType.CHANGE:
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    for i, o in enumerate(values):
        if mistake := _value_mistake(cfg, o):
            return o, mistake
        if o.type is OverrideType.DEL and _rebuilt(o.key_or_group, values[i + 1 :]):
            # Hydra removes it before the additions that build it anew: they add to nothing ("set already" was wrong).
            owner, _, leaf = o.key_or_group.rpartition(".")
            with open_dict(cfg):
                del (OmegaConf.select(cfg, owner) if owner else cfg)[leaf]
        if o in targets and o.type is not OverrideType.CHANGE and o.type is not OverrideType.DEL:
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    return None
