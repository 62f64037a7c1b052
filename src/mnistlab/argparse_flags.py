"""The command line's flags: Hydra's own, and an argparse-style one (``--epochs 3``) that Hydra cannot take.

Most PyTorch scripts read ``--epochs 3 --lr 0.01``; Hydra's parser took ``--epochs`` for nothing and ``3``
for an override, and the line said ``cannot read the override '3': LexerNoViableAltException``. Here
such a flag is answered with the override it stands for where the config has a close key. So is an override
that the shell split into words, as other tools' ``key = value`` or an unquoted list ``[8, 16]`` are.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir

from mnistlab.config_tree import HYDRA_RECORDS, all_keys
from mnistlab.spelling import nearest

# Hydra 1.3's own flags (as `python scripts/train.py --help` lists them); argparse also takes a long one's prefix.
HYDRA_LONG = (
    "--help", "--hydra-help", "--version", "--cfg", "--resolve", "--package", "--run", "--multirun",
    "--shell-completion", "--config-path", "--config-name", "--config-dir", "--experimental-rerun", "--info",
)  # fmt: skip
HYDRA_SHORT = ("-h", "-c", "-p", "-r", "-m", "-sc", "-cp", "-cn", "-cd", "-i")
# Of those, the ones after which the command only shows something (help, the config): nothing runs or is checked.
SHOW_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
# And the ones that take a value, by what the value is.
FLAGS_WITH_VALUE = {
    "--config-path": "path", "-cp": "path", "--config-name": "name", "-cn": "name",
    "--config-dir": "dir", "-cd": "dir", "--package": "package", "-p": "package",
}  # fmt: skip
# The flags of the usual PyTorch example scripts whose name is not a key's, with the keys they may mean
# (train.py's Trainer is under trainer., the other scripts take accelerator= at the top).
ALIASES = {
    "epochs": ("trainer.max_epochs",),
    "lr": ("optimizer.lr",),
    "learning_rate": ("optimizer.lr",),
    "wd": ("optimizer.weight_decay",),
    "bs": ("data.batch_size",),
    "device": ("trainer.accelerator", "accelerator"),
    "ckpt": ("ckpt_path",),
    "checkpoint": ("ckpt_path",),
}


# Lightning 1.x's device flags, which its argparse scripts took (``--gpus 2``; ``--gpus 0``: none), and other scripts'
# GPU counts; each stands for an accelerator and a count, two keys here. ``--gpu N`` names one GPU by its index, as in
# PyTorch's examples (``-1``: the CPU, as in the scripts that take -1 for none). Under train.py's Trainer the keys are
# under trainer., the other scripts' accelerator is at the top.
GPU_COUNT_FLAGS = ("gpus", "num_gpus", "n_gpus", "ngpus", "ngpu", "gpu_count")
DEVICE_FLAGS = (*GPU_COUNT_FLAGS, "gpu", "cpu")
ACCELERATOR_KEYS, DEVICES_KEYS = ("trainer.accelerator", "accelerator"), ("trainer.devices", "devices")


def _is_hydras(name: str) -> bool:
    """Whether ``name`` (``--multirun``, ``-cn``, ``--multi``) is one of Hydra's flags, as argparse reads it."""
    if name.startswith("--"):
        return len(name) > 2 and any(flag.startswith(name) for flag in HYDRA_LONG)
    return name in HYDRA_SHORT


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _foreign_flag(args: list[str]) -> tuple[str, str, str | None] | None:
    """The first flag that is not Hydra's: as given (with its value), its name and value (None: none), or None."""
    for i, arg in enumerate(args):
        if not arg.startswith("-") or _is_number(arg) or arg in ("-", "--"):
            continue
        name, eq, value = arg.partition("=")
        if _is_hydras(name):
            continue
        if eq:
            return arg, name, value
        following = args[i + 1] if i + 1 < len(args) else None
        takes_it = following is not None and "=" not in following
        takes_it = takes_it and (not following.startswith("-") or _is_number(following))
        return (f"{arg} {following}", name, following) if takes_it else (arg, name, None)
    return None


def _key_for(name: str, keys: list[str]) -> str | None:
    """The key the flag ``name`` (``epochs``, ``batch_size``) means among ``keys``, or None."""
    if aliased := [key for key in ALIASES.get(name, ()) if key in keys]:
        return aliased[0]
    if name in keys:
        return name
    leaves = {key: key.rsplit(".", 1)[-1] for key in keys if not key.startswith(HYDRA_RECORDS)}
    close = name if name in leaves.values() else nearest(name, list(leaves.values()))
    found = [key for key, leaf in leaves.items() if leaf == close]
    return min(found, key=lambda k: (k.count("."), len(k))) if found else None


def _device_overrides(flag: str, value: str | None, keys: list[str]) -> str | None:
    """The overrides a device flag (``gpus`` with ``value``, ``gpu``, ``cpu``) stands for among ``keys``, or None."""
    accelerator = next((key for key in ACCELERATOR_KEYS if key in keys), None)
    devices = next((key for key in DEVICES_KEYS if key in keys), None)
    if accelerator is None or (flag == "cpu" and value is not None):
        return None
    given = None if value is None else value.strip()
    if flag == "gpu":  # one GPU by its index
        if given == "-1":
            return f"{accelerator}=cpu"
        if given is not None and not given.isdigit():
            return None
        return f"{accelerator}=gpu" + (f" {devices}=[{given}]" if devices and given is not None else "")
    if flag == "cpu" or given == "0":  # Lightning's gpus=0: no GPU, the CPU
        return f"{accelerator}=cpu"
    count = "..." if given is None else given
    if "," in count:  # Lightning's gpus="0,1": those GPUs by index
        count = f"[{count.strip(',')}]"
    if count != "..." and not all(part.strip().lstrip("-").isdigit() for part in count.strip("[]").split(",")):
        return None
    return f"{accelerator}=gpu" + (f" {devices}={count}" if devices else "")


def flag_mistake(args: list[str], conf: Path, config_name: str) -> str | None:
    """The line for an argparse-style flag among ``args`` (``--epochs 3``), or None where there is none.

    Args:
        args: The command line after the script's name.
        conf: The script's config folder.
        config_name: The config the script composes (``train``, ``evaluate``, ...).
    """
    found = _foreign_flag(args)
    if found is None:
        return None
    given, flag, value = found
    line = f"{given}: the scripts take Hydra overrides (key=value), not --flags"
    try:
        with initialize_config_dir(str(conf.resolve()), version_base="1.3"):
            keys = list(all_keys(compose(config_name)))
    except Exception:  # a config that does not compose: Hydra says why once the flag is gone
        keys = []
    name = flag.lstrip("-").replace("-", "_")
    if name in DEVICE_FLAGS and (overrides := _device_overrides(name, value, keys)):
        return f"{line}: give {overrides}"
    key = _key_for(name, keys)
    if key is None:
        return f"{line}; see the settings with --cfg job"
    return f"{line}: give {key}={value if value is not None else '...'}"


_KEY = re.compile(r"[+~]{0,2}[A-Za-z_][\w.\-/@]*")


def split_word_mistake(overrides: list[str]) -> str | None:
    """An override the shell passed as several words, which Hydra reads one by one: ``optimizer.lr = 0.1``,
    ``optimizer.lr =0.1``, ``optimizer.lr= 0.1`` (it read an empty value, then failed on ``0.1``), an unquoted list
    with spaces, ``model.channels=[8, 16]``, or a sweep's, ``-m seed=1, 2``. None when there is none."""
    for i, word in enumerate(overrides):
        rest = overrides[i + 1 :]
        if _KEY.fullmatch(word) and rest and rest[0].startswith("="):  # key = value, key =value
            words = [word, *rest[: 2 if rest[0] == "=" else 1]]
        elif word.endswith("=") and _KEY.fullmatch(word[:-1]) and rest and not re.match(r"[+~]|.*=", rest[0]):
            words = [word, rest[0]]  # key= value
        elif word.count("[") > word.count("]"):  # a list split at its spaces
            ends = [n for n in range(i + 1, len(overrides)) if _balanced("".join(overrides[i : n + 1]))]
            if not ends:
                return None
            words = overrides[i : ends[0] + 1]
        elif "=" in word and word.endswith(",") and rest and _a_value(rest[0]):  # a sweep's values: seed=1, 2
            n = i + 1
            while n + 1 < len(overrides) and overrides[n].endswith(",") and _a_value(overrides[n + 1]):
                n += 1
            words = overrides[i : n + 1]
        else:
            continue
        given = " ".join(words)
        return (
            f"{given}: the shell passed this override as {len(words)} words, and Hydra reads each word as an "
            f"override: give {shlex.quote(''.join(words))}"
        )
    return None


def _a_value(word: str) -> bool:
    """Whether ``word`` can be a value the shell split off, not an override of its own (``x=1``, ``~group``)."""
    return "=" not in word and not word.startswith(("~", "+"))


def _balanced(text: str) -> bool:
    return text.count("[") <= text.count("]")
