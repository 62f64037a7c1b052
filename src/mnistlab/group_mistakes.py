"""What is wrong with a config group's option on a command line: one sentence each.

A group chosen that has no such option, ``+group=`` for a group chosen already, ``~group=option`` of an option
the run does not choose, ``group=null``, and an option given under a name that is no group (``experment=cnn``).
``command_line.config_mistake`` calls these before the value overrides (``override_mistakes``) are judged.
"""

from __future__ import annotations

from hydra.core.override_parser.types import Glob, Override, OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig

from mnistlab.config_tree import ABSENT, ConfigTree, child, has_key
from mnistlab.override_mistakes import deletion_mistake, values_of
from mnistlab.spelling import nearest


def first_choice(override: Override, options: list[str]) -> str:
    """A group's override as one option, a sweep's first; a glob is matched here (Hydra's needs its config loader)."""
    if not override.is_sweep_override():
        return override.input_line
    if isinstance(glob := override.value(), Glob):
        return f"{override.get_key_element()}={glob.filter(options)[0]}"  # group_mistake refused one matching none
    return f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"


def sweeper_mistake(groups: list[Override]) -> str | None:
    """Hydra's Optuna sweeper by name (``hydra/sweeper=optuna``, or mnistlab's own, which the search preset sets with
    its search space and pruning callback: alone, each trial failed on Hydra's "Could not override")."""
    chosen = {o.key_or_group: str(o.value()) for o in groups}
    if "optuna" in chosen.get("hydra/sweeper", "") and chosen.get("hparams_search", "grid") == "grid":
        return f"hydra/sweeper={chosen['hydra/sweeper']}: an Optuna search is hparams_search=optuna; give that instead"
    return None


def group_mistake(override: Override, options: list[str]) -> str | None:
    group = override.key_or_group
    if isinstance(glob := override.value(), Glob) and not glob.filter(options):
        return f"{override.input_line}: no {group} matches ({', '.join(options)})"
    for value in values_of(override):
        for option in value if isinstance(value, list) else [value]:
            if option is None or str(option) in options:
                continue
            close = nearest(str(option), options)
            hint = f"; did you mean {group}={close}?" if close else ""
            return f"{group}={option}: no such {group}{hint} ({', '.join(options)})"
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
        needed = found is not ABSENT and deletion_mistake(cfg, group, found) is not None
    if needed:
        return f"{override.input_line}: the run needs a {group}; choose one: {', '.join(tree.options(group))}"
    return f"{override.input_line}: Hydra takes no null for a config group; give ~{group} to run without one"


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
