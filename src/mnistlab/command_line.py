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

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException, OverrideParseException

from mnistlab.argparse_flags import FLAGS_WITH_VALUE, SHOW_FLAGS, flag_mistake, split_word_mistake
from mnistlab.config_keys import shell_path_override
from mnistlab.config_tree import ConfigTree, has_key, scripts_with_key
from mnistlab.extras import GROUP_EXTRAS, missing_extra
from mnistlab.group_mistakes import (
    added_group_mistake,
    first_choice,
    group_as_a_key_mistake,
    group_mistake,
    null_group_mistake,
    removal_mistake,
    sweeper_mistake,
)
from mnistlab.override_mistakes import values_mistake, values_of
from mnistlab.run_folders import folder_mistake


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


def _flag_among_overrides(args: list[str]) -> str | None:
    """A flag (with its value) after an override and before others (``a=1 -m b=2``), which Hydra's argparse refuses."""
    seen, i = False, 0
    while i < len(args):
        arg, step = args[i], 2 if args[i] in FLAGS_WITH_VALUE else 1  # -cn NAME: NAME is no override
        if arg.startswith("-") and seen and any(not a.startswith("-") for a in args[i + step :]):
            return " ".join(args[i : i + step])
        seen, i = seen or not arg.startswith("-"), i + (step if arg.startswith("-") else 1)
    return None


# -m ran these as a training sweep's jobs: their console (the predictions, the server's address) went into
# multirun/<date>/<n>/<script>.log, and the console showed Hydra's launch lines and a summary of "0 jobs".
ONE_RUN = {
    "predict": "prints its predictions here and runs no sweep: drop -m (index=[1,2] predicts several test "
    "images, ckpt_path=[a,b] is one ensemble)",
    "serve": "serves one model and runs no sweep: drop -m (ckpt_path=[a,b] serves one ensemble)",
}


def _several_values(overrides: list[Override], config_name: str, multirun: bool) -> str | None:
    """Values swept outside a multirun (Hydra: four lines on ambiguity), or a range no search samples (a traceback)."""
    search = any(o.key_or_group in ("hparams_search", "hydra/sweeper") and o.value() != "grid" for o in overrides)
    for o in overrides:
        if not o.is_sweep_override() or o.key_or_group.startswith("hydra"):
            continue
        line = o.input_line.lstrip("+")
        key, value = line.split("=", 1)
        if o.value_type == ValueType.INTERVAL_SWEEP and config_name == "train" and not search:
            ends = o.value()
            fix = f"{'' if multirun else '-m '}hparams_search=optuna, or list values: {key}={ends.start},{ends.end}"
            return f"{line} is a range, which only a search samples: add {fix}"
        if multirun:
            continue
        if config_name == "train":
            listed = f" ({key}=[{value}] is a list)" if o.value_type == ValueType.SIMPLE_CHOICE_SWEEP else ""
            return f"{line} gives several values: add -m to run one job per value{listed}"
        if key == "ckpt_path" and o.value_type == ValueType.SIMPLE_CHOICE_SWEEP:  # an ensemble
            return f"{line} gives several values: {key}=[{value}] is one list"
        return f"{line} gives several values, but {key} takes one"
    return None


def _swept_hydra_setting(overrides: list[Override]) -> str | None:
    """A comma list for a Hydra setting (Hydra: "Sweeping over Hydra's configuration is not supported", exit 1)."""
    for o in overrides:
        if not o.is_sweep_override() or not o.key_or_group.startswith("hydra."):
            continue
        if o.key_or_group.startswith("hydra.sweeper.params."):  # the grid sweeper's entry is one string
            key, value = o.input_line.split("=", 1)
            return f"{o.input_line}: an entry of hydra.sweeper.params is one string; quote it: \"{key}='{value}'\""
        return f"{o.input_line}: a Hydra setting takes one value; a sweep runs over the job's settings, not Hydra's"
    return None


_TILDE = re.compile(r"(\[|,)(file://)?~(?=[/,\]])")  # a list's item from the home folder: [file://~/x,~/y]


def _unreadable(text: str, reason: str) -> str:
    """The line for an override that Hydra's grammar cannot read (``reason``), with the fix where one is known."""
    key, _, value = text.partition("=")
    if "=" in value:  # a path holding = and , as a sweep's job folders do: Hydra needs it in quotes
        quoted = f'\'{key}=["...","..."]\'' if value.startswith("[") else shell_path_override(key, value)
        return f"cannot read the override {text!r}: {reason}; a path with = in it goes in quotes: {quoted}"
    if "~" in value and not value.startswith(("'", '"')):
        # The shell expands ~ only at a word's start or after a plain name's = (ckpt_path=~/x), so data.root=~/x
        # and hydra.searchpath=[file://~/x] reach Hydra as they are, whose grammar has no unquoted ~.
        listed = value.startswith("[")
        home = _TILDE.sub(lambda m: m[1] + (m[2] or "") + os.path.expanduser("~"), value) if listed else None
        if (home := home or os.path.expanduser(value)) != value:
            fix = shlex.quote(f"{key}={home}") if listed else shell_path_override(key, home)
            return f"{text}: the shell does not expand ~ after {key}= and Hydra cannot read it: give {fix}"
        if not listed:
            return f"{text}: Hydra cannot read a ~ unquoted: give {shell_path_override(key, value)}"
    return f"cannot read the override {text!r}: {reason} (key=value, see hydra.cc's override grammar)"


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
    if mistake := flag_mistake(args, script.parent.parent / "conf", parsed[1].get("name") or config_name):
        return mistake  # first: --epochs 3 is no misplaced flag of Hydra's, and 3 no override
    if flag := _flag_among_overrides(args):  # Hydra: its usage text and "unrecognized arguments: <the rest>"
        where = f"{flag} {' '.join(parsed[0])}"
        return f"{flag.split()[0]} goes before the overrides (Hydra reads none after a flag that follows one): {where}"
    strings, flags = parsed
    if mistake := split_word_mistake(strings):
        return mistake
    if "dir" in flags or "package" in flags:
        return None  # another search path or package: Hydra's own checks apply
    conf = Path(flags.get("path") or script.parent.parent / "conf")
    conf = conf if conf.is_absolute() else script.parent / conf
    parser, overrides = OverridesParser.create(), []
    for text in strings:  # one at a time, so that a parse error names its override
        try:
            overrides += parser.parse_overrides([text])
        except OverrideParseException as e:
            return _unreadable(text, str(e).splitlines()[0])
    if mistake := _swept_hydra_setting(overrides):
        return mistake
    swept: dict[str, str] = {}
    for o in overrides:  # Hydra takes the last value: a sweep's list given before it was dropped without a word
        if o.key_or_group in swept and not o.key_or_group.startswith("hydra"):
            return f"{swept[o.key_or_group]} is replaced by {o.input_line}, given after it: give {o.key_or_group} once"
        if o.is_sweep_override():
            swept[o.key_or_group] = o.input_line
    for o in overrides:  # Hydra would make it only as the job starts, and fail with a traceback
        if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir") and not str(o.value() or "").strip():
            # An unset shell variable ($RUN): '' wrote the run into the launch folder, null into ./None.
            default = "outputs/<date>/<time>" if o.key_or_group == "hydra.run.dir" else "multirun/<date>/<time>"
            return f"{o.key_or_group}={o.value()!r} names no folder: give one, or leave it out for {default}"
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
    if mistake := _several_values(overrides, config_name, bool(multirun)):
        return mistake
    if multirun and config_name in ONE_RUN:  # a train.py sweep's jobs, folders and summary, for what prints or serves
        return f"{config_name}.py {ONE_RUN[config_name]}"
    for o in overrides:  # a feature of an optional extra: the install line, before anything else
        values = values_of(o) if o.key_or_group in {group for group, _ in GROUP_EXTRAS} else []
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
    if searchpath is not None and isinstance(searchpath.value(), str):  # Hydra: "must be a list of strings", exit 1
        listed = shlex.quote(f"hydra.searchpath=[{searchpath.input_line.split('=', 1)[1]}]")
        return f"{searchpath.input_line}: hydra.searchpath takes a list of folders, even of one: give {listed}"
    folders = _searchpath_folders(searchpath.value()) if searchpath else []
    if folders is None:
        return None  # a package or another scheme: Hydra's checks apply
    if missing := [f for f in folders if not f.is_dir()]:
        return f"{searchpath.input_line}: {missing[0]} is not a folder"
    overrides = [o for o in overrides if o is not searchpath]
    with initialize_config_dir(str(conf.resolve()), version_base="1.3"):
        tree = ConfigTree(searchpath.input_line if searchpath else None, folders)
        name = flags.get("name") or config_name
        groups, values, removed = [], [], []
        for o in overrides:
            parent, _, leaf = o.key_or_group.rpartition("/")
            is_group = leaf in tree.groups(parent)
            if is_group and o.type is OverrideType.DEL:
                # ~scheduler: Hydra removes it and the run goes without; ~optimizer is judged as a value it needs.
                (removed if tree.optional(name, o.key_or_group) else values).append(o)
            else:
                (groups if is_group else values).append(o)
        for mistake in (sweeper_mistake(groups), *(group_mistake(o, tree.options(o.key_or_group)) for o in groups)):
            if mistake:
                return mistake
        # The tree of the chosen options (a sweep's first); the value overrides are checked against it.
        choices = [first_choice(o, tree.options(o.key_or_group)) for o in groups]
        for o in groups:
            others = [choice for g, choice in zip(groups, choices, strict=True) if g.value() is not None]
            if mistake := null_group_mistake(tree, name, o, others):
                return mistake
        if mistake := added_group_mistake(tree, name, groups, choices):
            return mistake
        for o in removed:
            if mistake := removal_mistake(tree, name, o, choices):
                return mistake
        if not values:
            return None
        try:
            cfg = tree.compose(name, choices)
        except HydraException:  # a group this config never chooses, or choices that clash (Hydra's message says how)
            return _unchosen_group(script, name, groups)
        for o in values:
            if mistake := group_as_a_key_mistake(tree, cfg, o):
                return mistake
        found = values_mistake(cfg, values)
        if found is None:
            return None
        o, mistake = found
        if not has_key(cfg, o.key_or_group) and (other := tree.option_with(o.key_or_group, name, choices)):
            mistake += f"; {other} has it"
        elif scripts := scripts_with_key(conf, name, o.key_or_group):
            mistake += f"; {o.key_or_group} is a setting of {' and '.join(scripts)}, not of {script.name}"
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


def exit_on_mistake(script: str, config_name: str) -> None:
    """For an entry script's ``__main__``: prints the command line's first mistake and exits with 2."""
    if mistake := config_mistake(Path(script).resolve(), config_name, sys.argv[1:]):
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
