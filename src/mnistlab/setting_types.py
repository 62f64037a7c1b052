"""The types a config setting admits, from its ``_target_``'s annotation or its current value.

``mnistlab.command_line`` refuses a value of another type before Hydra runs (``trainer.max_epochs=abc``).
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

_ABSENT = object()
CONTAINERS = (collections.abc.Sequence, collections.abc.Mapping, collections.abc.Set)


def _primitive_types(annotation: Any) -> set[type] | None:
    """The command-line types an annotation admits (None: not known, so not checked)."""
    if annotation in (int, float, bool, str):
        return {annotation}
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return {type(v) for v in typing.get_args(annotation)}
    if origin in (typing.Union, types.UnionType):
        found: set[type] = set()
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            inner = _primitive_types(arg)
            if isinstance(arg, type) and issubclass(arg, CONTAINERS) and not issubclass(arg, str | bytes):
                return None  # a bare `list` or `dict`: the command line's [..] or {..}, not checked
            if inner is None and typing.get_origin(arg) is None and isinstance(arg, type):
                continue  # a tensor or another object the command line cannot give
            if inner is None:
                return None  # a list, a tuple, ...: not checked
            found |= inner
        return found or None
    return None


def expected_types(parent: DictConfig, key: str) -> set[type] | None:
    """The types a value of ``parent[key]`` may have, from its ``_target_``'s annotation or its current value.

    None: not known (no annotation that says, and no current value of a plain type), so not checked.
    """
    target = parent.get("_target_") if "_target_" in parent else None
    if isinstance(target, str) and (annotation := _annotation(target, key)) is not _ABSENT:
        return _primitive_types(annotation)
    if key not in parent or OmegaConf.is_interpolation(parent, key) or OmegaConf.is_missing(parent, key):
        return None
    value = parent[key]
    return {type(value)} if type(value) in (int, float, bool) else None


def flag_mistake(parent: DictConfig, leaf: str, key: str, value: Any) -> str | None:
    """A word, list or dict that a yes/no setting of a ``_target_`` does not take besides true and false, else None.

    Such a flag names its other modes as literals (``trainer.deterministic``: ``"warn"``), and Lightning
    tests it for truth (``if deterministic:``): any other word, a misspelled ``true`` included, or a
    non-empty list (``[true]``) switched part of it on without a word.
    """
    target = parent.get("_target_") if "_target_" in parent else None
    if not isinstance(value, str | list | dict) or not isinstance(target, str) or _instantiated(value):
        return None
    if (annotation := _annotation(target, leaf)) is _ABSENT:
        return None
    atoms = _atoms(annotation)
    words = sorted(a for a in atoms if isinstance(a, str))
    if not words or bool not in atoms or str in atoms or value in words:
        return None
    return f"{key}={value!r} is not true, false or {' or '.join(repr(w) for w in words)}"


def _atoms(annotation: Any) -> list[Any]:
    """An annotation's unions and literals flattened: the types and literal values it admits."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [atom for arg in typing.get_args(annotation) for atom in _atoms(arg)]
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    return [annotation]


def _annotation(target: str, key: str) -> Any:
    """The annotation of argument ``key`` of ``target`` (a class or a function), else ``_ABSENT``.

    Resolved for that argument alone: an annotation of another argument that names a class imported only
    for type checkers (``engine: Engine | None``) must not hide the ones that can be read.
    """
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, name)
        annotation = inspect.get_annotations(func.__init__ if isinstance(func, type) else func).get(key, _ABSENT)
        # Under `from __future__ import annotations` it is the source text, evaluated as typing would.
        return eval(annotation, vars(module)) if isinstance(annotation, str) else annotation
    except Exception:  # not importable, or not resolvable: judged by the current value
        return _ABSENT


def type_mistake(key: str, value: Any, expected: set[type]) -> str | None:
    """Why ``value`` is not of the ``expected`` types (``expected_types``), else None."""
    if isinstance(value, list | dict) and not _instantiated(value):
        # Hydra's [..] and {..}: never meant as a word, and expected_types leaves a setting that takes a list
        # unchecked. Lightning would test [true] for truth or hand {a: 1} on, not refuse it.
        return f"{key}={value!r} is a {type(value).__name__}, not {_wanted(expected)}"
    if value is None or type(value) in expected or (type(value) is int and float in expected):
        return None
    if str in expected:  # Hydra reads `data.root=123` as a number: a folder named 123 is still meant
        return None
    return f"{key}={value!r} is not {_wanted(expected)}"


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _wanted(expected: set[type]) -> str:
    """``expected`` in words: ``{int, str}`` -> ``an integer or a string`` (a number takes integers too)."""
    kinds = [t for t in _NAMES if t in expected and not (t is int and float in expected)]
    names = [_NAMES[t] for t in kinds]
    if kinds[0] is bool and len(kinds) > 1:
        names[0] = "true, false"
    return " or ".join(names)


def _instantiated(value: Any) -> bool:
    """A ``{_target_: ...}`` node: Hydra builds an object of it, which its ``_target_``'s checks judge."""
    return isinstance(value, dict) and "_target_" in value
