"""Plain-value records of the objects a checkpoint needs, and the one safe way back to the objects.

A checkpoint is data, not code: it stores how to rebuild its network as a record
``{"_target_": "package.module.Class", **arguments}`` with plain values only (None, bool,
int, float, str, and lists/dicts of them), so it loads with ``torch.load(weights_only=True)``.
Rebuilding resolves ``_target_`` to a class and calls it only if it is a subclass of
``torch.nn.Module``; anything else (``os.system``, ``builtins.eval``, a function, any other
class) is refused before it is called, and so are nested ``_target_`` keys and ``${...}``
interpolations in the arguments. Optimizer and scheduler records (``{"target": ..., **kwargs}``)
are rebuilt the same way, as ``torch.optim.Optimizer`` / ``LRScheduler`` subclasses or
mnistlab's own schedule factories.

Importing the module that defines the class is the one thing a record can trigger, the same
trust Python gives to every module on ``sys.path``; standard-library targets are refused
without importing anything (it defines no network).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from mnistlab.errors import ConfigError, MnistlabError, first_line

PLAIN = (type(None), bool, int, float, str)
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# Hydra keys that only steer instantiation; they do not change the network a config builds.
HYDRA_KEYS = ("_recursive_", "_convert_")
SCHEDULES = "mnistlab.systems.schedules"
NETWORK_REPR_KEY = "network_repr"  # a checkpoint's repr(net), kept where its record names the class alone


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_plain(value: Any, where: str) -> None:
    """Refuses anything but plain values: no objects, no nested ``_target_``, no ``${...}`` interpolation."""
    if isinstance(value, str) and "${" in value:
        raise MnistlabError(f"{where}={value!r}: refused, interpolations are not allowed (plain values only)")
    if isinstance(value, PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        if "_target_" in value:
            raise MnistlabError(f"{where}: refused, nested _target_ (a record's arguments are plain values only)")
        for key, item in value.items():
            check_plain(key, f"{where} key")
            check_plain(item, f"{where}.{key}")
    else:
        raise MnistlabError(f"{where}: refused, a {type(value).__name__} is not a plain value")


def resolve(target: Any, where: str) -> Any:
    """Imports ``package.module`` of ``package.module.Name`` and returns ``Name`` from it, without calling anything.

    Raises:
        MnistlabError: For a malformed path, a standard-library target (never a network), a module
            that cannot be imported (with how to make it importable) or a missing name.
    """
    if not isinstance(target, str) or not DOTTED.fullmatch(target):
        raise MnistlabError(f"{where}: _target_={target!r} is not a dotted path such as mnistlab.models.CNN")
    module_name, _, name = target.rpartition(".")
    if module_name.split(".")[0] in sys.stdlib_module_names:
        raise MnistlabError(f"{where}: refused {target}, the standard library holds no network, optimizer or schedule")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name + ".").startswith(e.name + "."):  # the target's own module, not a dependency
            raise MnistlabError(
                f"{where}: cannot import module {module_name} (of _target_={target}); make it importable: "
                f"add the folder that holds {e.name.replace('.', '/')}.py or its package to PYTHONPATH, "
                "e.g. PYTHONPATH=/path/to/folder python scripts/..."
            ) from None
        raise MnistlabError(f"{where}: importing {module_name} (of _target_={target}) failed: {e}") from None
    if not hasattr(module, name):
        raise MnistlabError(f"{where}: module {module_name} has no {name} (_target_={target})")
    return getattr(module, name)


def what(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {class_path(obj)}"
    return f"a {type(obj).__name__}"


def network_class(target: Any, where: str) -> type[nn.Module]:
    """The ``torch.nn.Module`` subclass named by ``target``; anything else is refused before it is called."""
    obj = resolve(target, where)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise MnistlabError(
            f"{where}: refused {target}, it is {what(obj)}, not a torch.nn.Module subclass "
            "(a network is rebuilt only by calling its class)"
        )
    return obj


def network_arguments(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The keyword arguments of a record, checked to be plain values."""
    args = {k: v for k, v in record.items() if k != "_target_" and k not in HYDRA_KEYS}
    for key in args:
        if not isinstance(key, str) or key.startswith("_"):
            raise MnistlabError(f"{where}: refused key {key!r} (a record holds _target_ and keyword arguments only)")
    check_plain(args, where)
    return args


def network_record(net: nn.Module, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint stores to rebuild ``net``: ``{"_target_": class path, **arguments}``.

    Args:
        net: The network, built from ``config``.
        config: Its resolved config (``_target_`` and keyword arguments); None records the
            class alone, i.e. a network rebuilt with its default arguments.

    Raises:
        MnistlabError: When ``config`` does not name ``net``'s own class (e.g. a factory function)
            or holds anything but plain values, so that no checkpoint could rebuild it.
    """
    if config is None:
        return {"_target_": class_path(type(net))}
    cls = network_class(config.get("_target_"), "model")
    if type(net) is not cls:
        raise MnistlabError(f"model: _target_={config['_target_']} built a {class_path(type(net))}, not itself")
    return {"_target_": class_path(cls), **network_arguments(config, "model")}


def build_network(record: Mapping[str, Any], where: str = "checkpoint network") -> nn.Module:
    """Calls the record's class with its arguments, after checking both (see the module docstring)."""
    if "_target_" not in record:
        raise MnistlabError(f"{where}: the network record has no _target_ (keys: {sorted(map(str, record))})")
    args = network_arguments(record, where)
    cls = network_class(record.get("_target_"), where)
    try:
        return cls(**args)
    except TypeError as e:  # arguments that do not fit the class, e.g. from a renamed parameter
        hint = "" if args else f"; {_pass_the_network(record['_target_'])}"
        raise MnistlabError(f"{where}: {record['_target_']}(**{args}) failed: {e}{hint}") from None


def _pass_the_network(target: str) -> str:
    """How to load a checkpoint whose record names the class alone, and how to record the arguments next time."""
    name = target.rpartition(".")[2]
    return (
        "its record holds no arguments (a Classifier built in Python without net_config): load it with "
        f"Classifier.load_from_checkpoint(path, net={name}(...)) and the network's arguments, and build the "
        f"Classifier with net_config={{'_target_': '{target}', ...}} so that its checkpoints record them"
    )


def note_network(checkpoint: dict[str, Any], record: Mapping[str, Any], net: nn.Module) -> None:
    """Keeps ``repr(net)`` in a checkpoint whose record names the class alone (see ``check_rebuilt``).

    Such a record rebuilds the network with its default arguments, a guess: ``MLP(hidden_units=32)`` would come
    back with 100 units, and a network whose arguments change no weight shape (an activation) would load silently.
    """
    if set(record) == {"_target_"}:
        checkpoint[NETWORK_REPR_KEY] = repr(net)


def check_rebuilt(checkpoint: Mapping[str, Any], record: Mapping[str, Any], net: nn.Module) -> None:
    """Refuses a network rebuilt from a class-alone record that is not the one saved (its layers' ``repr`` differ).

    Raises:
        MnistlabError: Naming the first layer that differs and how to load the checkpoint instead.
    """
    saved = checkpoint.get(NETWORK_REPR_KEY)
    if not isinstance(saved, str) or saved == repr(net):
        return
    pairs = zip(saved.splitlines(), repr(net).splitlines(), strict=False)
    was, now = next(((a.strip(), b.strip()) for a, b in pairs if a != b), ("?", "?"))
    raise MnistlabError(
        f"checkpoint network: {record['_target_']} with its default arguments is not the network that was saved "
        f"({now!r} where the saved one has {was!r}); {_pass_the_network(record['_target_'])}"
    )


def factory_from_record(record: Mapping[str, Any], base: type, where: str) -> Callable:
    """The ``functools.partial`` that ``describe`` recorded, rebuilt only for a ``base`` subclass or a schedule."""
    record = dict(record)
    target = record.pop("target", None)
    check_plain(record, where)
    obj = resolve(target, where)
    trusted = isinstance(obj, type) and issubclass(obj, base)
    trusted |= getattr(obj, "__module__", None) == SCHEDULES and callable(obj)
    if not trusted:
        raise MnistlabError(f"{where}: refused {target}, it is {what(obj)}, not a {class_path(base)} subclass")
    return partial(obj, **record)


def blank_image(net: nn.Module) -> torch.Tensor:
    """One blank (1, 1, 28, 28) image on ``net``'s device and in its parameters' dtype, to probe it with."""
    param = next(net.parameters(), None)
    return torch.zeros(1, 1, 28, 28, device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None else None)  # fmt: skip


def eval_forward(net: nn.Module, x: torch.Tensor) -> Any:
    """``net(x)`` in eval mode without a graph, the network's mode restored after: a probe, not a step."""
    training = net.training
    try:
        with torch.no_grad():
            return net.eval()(x)
    finally:
        net.train(training)


def output_width(net: nn.Module) -> int:
    """C of the (1, C) logits that ``net`` returns for one blank (1, 1, 28, 28) image, in eval mode.

    Raises:
        ConfigError: When the forward pass fails on the image (a network that breaks the contract, e.g. one
            that expects flat (B, 784) inputs) or its output is not (1, C).
    """
    try:
        out = eval_forward(net, blank_image(net))
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, NotImplementedError) as e:
        # What torch raises for inputs of the wrong shape or type, or a network's own input check (an assert):
        # the contract is broken, not mnistlab.
        reason = first_line(e)
        raise ConfigError(
            f"{class_path(type(net))} failed on a (1, 1, 28, 28) image: {reason}; "
            "a network must map (B, 1, 28, 28) images to (B, C) logits (flatten them itself if it needs (B, 784))"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"{class_path(type(net))} returned {shape} for a (1, 1, 28, 28) image; "
            "a network must return (B, C) logits for (B, 1, 28, 28) images"
        )
    return out.shape[1]


def check_trainable(net: nn.Module) -> None:
    """Refuses a network with nothing to train, before any work (torch's optimizer would fail inside the fit).

    Raises:
        ConfigError: When ``net`` has no parameter that requires a gradient.
    """
    if not any(p.requires_grad for p in net.parameters()):
        raise ConfigError(
            f"{class_path(type(net))} has no trainable parameters, so training would change nothing; "
            "give it layers with weights (nn.Linear, nn.Conv2d, ...) or unfreeze them"
        )


# Lightning's precisions that cast the network itself to their dtype; every other one (32-true, the mixed ones)
# feeds float32 images to the network as it was built.
CASTING_PRECISIONS = ("64-true", "16-true", "bf16-true")
CAST_METHODS = {torch.float64: ".double()", torch.float16: ".half()", torch.bfloat16: ".bfloat16()"}


def check_float32(net: nn.Module, precision: str) -> None:
    """Refuses a network built in another float dtype than float32 under a precision that does not cast it.

    A network whose ``__init__`` calls ``.double()`` passed every check (they probe it in its own dtype) and
    failed at the first training step with torch's "mat1 and mat2 must have the same dtype".

    Args:
        net: The built network.
        precision: The Trainer's resolved precision (``trainer.precision``: ``"32-true"``, ``"64-true"``, ...).

    Raises:
        ConfigError: When a floating parameter or buffer of ``net`` is not float32 and ``precision`` does not cast.
    """
    if precision in CASTING_PRECISIONS:
        return
    tensors = [*net.named_parameters(), *net.named_buffers()]
    other = [(name, t.dtype) for name, t in tensors if t.is_floating_point() and t.dtype != torch.float32]
    if not other:
        return
    name, dtype = other[0]
    dtype_name = str(dtype).removeprefix("torch.")
    cast = CAST_METHODS.get(dtype, f".to({dtype})")
    also = " or train it in float64 with trainer.precision=64" if dtype == torch.float64 else ""
    raise ConfigError(
        f"{class_path(type(net))} has {dtype_name} weights ({name}), but trainer.precision={precision} feeds it "
        f"float32 images: build it in float32 (drop its {cast}){',' if also else ''}{also}"
    )
