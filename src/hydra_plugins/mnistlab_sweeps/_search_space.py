"""The search space of ``hparams_search=optuna``: its entries checked and made Optuna distributions, and a
trial's values as its job gets them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf

from mnistlab.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.config_loader import ConfigLoader

# The fields of each kind of search-space entry: (required, optional).
FIELDS = {"float": ({"low", "high"}, {"log"}), "int": ({"low", "high"}, {"log"}), "categorical": ({"choices"}, set())}


def distribution(name: str, spec: Any) -> optuna.distributions.BaseDistribution:
    """``{type: float|int|categorical, low, high, log, choices}``, or Hydra's sweep syntax -> an Optuna distribution.

    Raises:
        ConfigError: An unknown type, a missing or unknown field (``+hydra.sweeper.params.optimizer.lr.low=...``
            nests ``lr`` under ``optimizer``, which was silently ignored), or a range Optuna refuses.
    """
    where = f"hydra.sweeper.params.{name}"
    if isinstance(spec, str):  # +hydra.sweeper.params.model='linear,hidden': a grid's entry, also Hydra's Optuna's
        spec = _from_sweep(where, spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}={spec}: an entry is {{type: float|int|categorical, ...}} or a sweep (a,b, {SWEEPS})"
        )
    kind = spec.get("type")
    if kind not in FIELDS:
        raise ConfigError(f"{where}: type must be float, int or categorical, not {kind!r}")
    required, optional = FIELDS[kind]
    article = "an" if kind == "int" else "a"
    if missing := sorted(required - spec.keys()):
        raise ConfigError(f"{where}: {article} {kind} entry needs {', '.join(missing)}")
    if unknown := sorted(spec.keys() - required - optional - {"type"}):
        allowed = ", ".join(["type", *sorted(required), *sorted(optional)])
        raise ConfigError(
            f"{where} has no field {', '.join(unknown)} ({article} {kind} entry takes {allowed}); to change the "
            "range of a dotted key such as optimizer.lr, edit a copy of conf/hparams_search/optuna.yaml"
        )
    try:
        if kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(spec["choices"]))
        cls = optuna.distributions.FloatDistribution if kind == "float" else optuna.distributions.IntDistribution
        return cls(spec["low"], spec["high"], log=spec.get("log", False))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


SWEEPS = "choice(a,b), range(1,5), interval(0.1,1), int(interval(1,9)), tag(log,interval(1e-4,0.1))"


def _from_sweep(where: str, text: str, loader: ConfigLoader | None = None, key: str | None = None) -> dict[str, Any]:
    """Hydra's sweep syntax, read as its Optuna sweeper reads it, -> the fields of an entry.

    A comma list, ``choice``, ``range`` or a group's ``glob`` (its options, from ``loader``) is categorical; an
    ``interval`` is a float range (an int range where both ends are integers, ``int(interval(...))``), on a log
    scale when tagged ``log``. ``key`` is the searched key (a glob lists its group's options), ``where`` names it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create(config_loader=loader).parse_overrides([f"{key or where}={text}"])[0]
        value = override.value()
        if isinstance(value, ChoiceSweep | RangeSweep | Glob):
            return {"type": "categorical", "choices": list(override.sweep_iterator())}
    except HydraException as e:
        raise ConfigError(f"{where}={text}: {str(e).splitlines()[0]}") from None
    if isinstance(value, IntervalSweep):
        integers = isinstance(value.start, int) and isinstance(value.end, int)
        return {
            "type": "int" if integers else "float",
            "low": value.start,
            "high": value.end,
            "log": "log" in value.tags,
        }
    raise ConfigError(f"{where}={text} is one value, nothing to search: give a sweep ({SWEEPS})")


def search_space(
    params: Mapping[str, Any], arguments: Sequence[str], loader: ConfigLoader
) -> tuple[list[str], dict[str, Any]]:
    """The entries of ``hydra.sweeper.params`` and the command line's sweeps, as Hydra's own Optuna sweeper takes them.

    ``-m hparams_search=optuna model=linear,hidden 'system.label_smoothing=interval(0,0.2)'`` searches both keys
    beside the preset's (a key the preset searches too takes the command line's range); Hydra stopped each job
    instead: "Ambiguous value for argument" (a list) or "Sweep parameters ... requires --multirun" (a range).

    Returns:
        The overrides that every trial shares, and the search space's entries by key.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    entries = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in params.items()}
    entries = {k: _from_sweep(f"hydra.sweeper.params.{k}", v, loader, k) if isinstance(v, str) else v
               for k, v in entries.items()}  # fmt: skip
    parser, shared = OverridesParser.create(), []
    for text in arguments:
        override = parser.parse_override(text)
        if override.is_sweep_override() and not override.key_or_group.startswith("hydra."):
            key, value = text.split("=", 1)
            entries[override.get_key_element()] = _from_sweep(key, value, loader)
        else:
            shared.append(text)
    return shared, entries


def check_searched_key(config: DictConfig, key: str, searched: Collection[str]) -> None:
    """Refuses a searched key that is neither a config group nor a setting (a trial's job would fail on it).

    A key under a searched group (``optimizer.momentum`` beside ``optimizer``) depends on the group's choice,
    and a ``+key`` adds a setting: neither can be judged from the sweep's own config.
    """
    from mnistlab.teachers import check_teacher_settings  # torch's import: the first trial's check makes it anyway

    check_teacher_settings([key], OmegaConf.select(config, "system.teacher"))  # alpha or T without a teacher
    group, dot, _ = key.partition(".")
    if key.startswith("+") or (dot and group in searched) or key in (config.hydra.runtime.choices or {}):
        return
    if OmegaConf.select(config, key, default=_ABSENT) is _ABSENT:
        choices = config.hydra.runtime.choices or {}
        if dot and choices.get(group):  # another option's setting: the search space was written for that one
            raise ConfigError(
                f"hydra.sweeper.params.{key}: {key} is not a setting of this run's {group}={choices[group]}; "
                f"search without it in a copy of conf/hparams_search/optuna.yaml (hparams_search=<the copy's name>), "
                f"or give a {group} that has it"
            )
        raise ConfigError(f"hydra.sweeper.params.{key}: {key} is not a setting or config group of this run")


_ABSENT = object()


def check_group_settings(
    config: DictConfig, loader: ConfigLoader, arguments: Sequence[str], searched: Mapping[str, Any]
) -> None:
    """Refuses a searched group's option that lacks a setting the search sets too (``model=cnn`` beside
    ``model.hidden_units``): each trial that drew it failed on its own, "not a setting of mnistlab.models.CNN"."""
    from hydra.errors import HydraException

    for group, entry in searched.items():
        settings = [key for key in searched if key.startswith(f"{group}.")]
        if not settings or group not in (config.hydra.runtime.choices or {}) or not hasattr(entry, "choices"):
            continue
        for option in entry.choices:
            try:
                cfg = loader.load_sweep_config(config, [*arguments, f"{group}={option}"])
            except HydraException:  # another reason, which the trials meet and report
                continue
            if lacking := [key for key in settings if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT]:
                raise ConfigError(
                    f"{group}={option} has no {lacking[0]}, which the search sets in every trial: search {group} "
                    f"without {option}, or without {lacking[0]} in a copy of conf/hparams_search/optuna.yaml"
                )


def check_objective(config: DictConfig, objective: str, direction: str) -> None:
    """Refuses a study that would optimise a number the trials do not record, or in the wrong direction.

    A run records its best checkpoint's score as ``<monitor>_best`` (``mnistlab.training.fit_and_test``):
    with ``callbacks.model_checkpoint.monitor=val/loss`` there is no ``val/acc_best``, and every trial would
    fail. The median pruner compares each epoch's ``callbacks.optuna_pruning.monitor`` in the study's direction.
    A test-set score (``test/acc``, ``ensemble/test/acc``) would let the test set choose the hyperparameters.
    """
    from mnistlab.sweeps.ranking import HIGHER_IS_BETTER
    from mnistlab.systems.metrics import FIT_METRICS, lower_is_better

    monitor = OmegaConf.select(config, "callbacks.model_checkpoint.monitor", default=None)
    if any(part.startswith("test") for part in objective.split("/")):
        raise ConfigError(
            f"hydra.sweeper.objective={objective} lets the test set choose the hyperparameters: search on a "
            f"validation score, hydra.sweeper.objective={monitor or 'val/acc'}_best (test/acc is reported for "
            "every trial)"
        )
    if objective.startswith("val/") and objective.endswith("_best") and monitor != objective.removesuffix("_best"):
        raise ConfigError(
            f"hydra.sweeper.objective={objective}, but callbacks.model_checkpoint.monitor={monitor} records "
            f"{monitor}_best instead: set hydra.sweeper.objective={monitor}_best (and its direction)"
        )
    wanted = {True: "maximize", False: "minimize"}
    if objective in HIGHER_IS_BETTER and direction != wanted[HIGHER_IS_BETTER[objective]]:
        raise ConfigError(
            f"hydra.sweeper.direction={direction} with objective {objective}: set "
            f"hydra.sweeper.direction={wanted[HIGHER_IS_BETTER[objective]]}"
        )
    pruned_on = OmegaConf.select(config, "callbacks.optuna_pruning.monitor", default=None)
    if pruned_on and pruned_on not in FIT_METRICS:  # never logged: no trial would ever be pruned
        raise ConfigError(
            f"callbacks.optuna_pruning.monitor={pruned_on} is not a metric the run logs ({', '.join(FIT_METRICS)})"
        )
    if pruned_on and lower_is_better(pruned_on) != (direction == "minimize"):
        raise ConfigError(
            f"callbacks.optuna_pruning.monitor={pruned_on} is pruned as if it were to {direction}: "
            f"set callbacks.optuna_pruning.monitor={'val/loss' if direction == 'minimize' else 'val/acc'}"
        )


def check_not_fixed(arguments: Collection[str], searched: Collection[str]) -> None:
    """Refuses a command-line value of a searched key: every trial's own value came after it and replaced it.

    ``python scripts/train.py -m hparams_search=optuna optimizer.lr=0.5`` trained no job with ``lr=0.5``.
    """
    from mnistlab.config_keys import override_key

    keys = {key.lstrip("+~") for key in searched}  # a searched +key: each trial adds it after the given one
    if fixed := [a for a in arguments if "=" in a and override_key(a) in keys]:
        raise ConfigError(
            f"{fixed[0]}: {override_key(fixed[0])} is searched (hydra.sweeper.params), so every trial would set "
            "its own value instead; drop it, or search without it in a copy of conf/hparams_search/optuna.yaml"
        )


def check_validation(config: DictConfig, objective: str, searched: Collection[str]) -> None:
    """Refuses a validation objective for runs that hold out no validation set (``data.val_size=0`` without ``cv``).

    ``experiment=notebook_hidden`` holds out none: each trial trained to its end, had no ``val/acc_best`` and
    was marked failed, and the search ended with exit status 0 and no best trial.
    """
    keys = {key.lstrip("+~") for key in searched}
    if not objective.startswith("val/") or keys & {"data", "data.val_size", "data.folds", "experiment"}:
        return  # a trial's own choice decides
    try:
        val_size, folds = OmegaConf.select(config, "data.val_size"), OmegaConf.select(config, "data.folds")
    except Exception:  # an interpolation the sweep's own process cannot resolve: the jobs judge it
        return
    if val_size == 0 and folds is None:
        raise ConfigError(
            f"hydra.sweeper.objective={objective} is measured on a validation set, but these runs hold out none "
            "(data.val_size=0): every trial would fail; give data.val_size=5000, or cross-validate with cv=5"
        )


OBJECTIVE_ATTR = "mnistlab_objective"


def study_mistake(study: optuna.Study, objective: str, direction: str) -> str | None:
    """Why a study (new, or continued in its sweep folder) cannot take this launch's objective and direction.

    Optuna loads a stored study with its own direction and takes any value told: a continued search with
    another objective mixed the two in one ranking (and reported the old trials' values under the new name).

    Returns:
        The reason in one line, or None (a new study records ``objective``).
    """
    stored = study.user_attrs.get(OBJECTIVE_ATTR)
    if stored is None and not study.trials:
        study.set_user_attr(OBJECTIVE_ATTR, objective)
    kept = study.direction.name.lower()
    if (stored or objective) != objective or kept != str(direction).lower():
        return (
            f"the study {study.study_name} in this sweep folder {'maximises' if kept == 'maximize' else 'minimises'} "
            f"{stored or 'its objective'}: continue it with hydra.sweeper.objective={stored or objective} "
            f"hydra.sweeper.direction={kept}, or give a new hydra.sweep.dir"
        )
    return None


def override_value(value: Any) -> str:
    """A trial's value on its job's command line: four significant digits keep job folder names readable."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def as_run(value: Any) -> Any:
    """A trial's value as its job gets it (``override_value``, read back)."""
    return float(override_value(value)) if isinstance(value, float) else value
