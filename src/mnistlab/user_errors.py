"""Error translation: which exceptions are the user's to fix, and their one-line message.

A user error is something the user can fix from the command line: mnistlab's own ``MnistlabError``
(bad values, data files, checkpoints), a mandatory setting left out (``ckpt_path=???``), Lightning's
``MisconfigurationException`` (a Trainer setting this machine or run cannot honour) and its fit loop's
``ValueError`` (a Trainer count the data cannot honour), a bad
value refused by the constructor of an object the config builds (Hydra wraps those), and mnistlab's
own error in a process that ``ddp_spawn`` started (it arrives as that process's traceback). Anything
else is a bug, in mnistlab or in the user's own code, and keeps its traceback.

The one place that reads exceptions this way: the entry scripts (``mnistlab.process``), the MLflow
logger and the sweep callbacks all ask ``user_error``. It imports nothing of mnistlab but its errors (and,
for a ``ValueError`` once Lightning is loaded, ``mnistlab.lightning_private``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

from mnistlab.errors import MnistlabError

EXIT_USER_ERROR = 2
# Lightning's wording for "accelerator=gpu on a machine without one", and what mnistlab says instead.
NO_GPU = "No supported gpu backend found!"
# Lightning's wording for an accelerator this machine lacks (trainer.accelerator=mps or cuda without one).
UNAVAILABLE = re.compile(
    r"`(\w+)Accelerator` can not run on your system since the accelerator is not available\. The following "
    r"accelerator\(s\) is available and can be passed into `accelerator` argument of `Trainer`: \[(.*)\]\."
)
DEVICES = {"mps": "Apple GPU (MPS)", "cuda": "GPU (CUDA)"}
# Hydra 1.3's InstantiationException has no attribute for the failing node's key; its message ends with it.
FULL_KEY = "full_key: "


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``raise ... from``), and so on."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def own_error(exc: BaseException) -> BaseException:
    """mnistlab's own error behind ``exc`` (Hydra wraps them), else ``exc`` itself."""
    return next((e for e in exception_chain(exc) if isinstance(e, MnistlabError)), exc)


def _is_misconfiguration(exc: BaseException) -> bool:
    return any(cls.__name__ == "MisconfigurationException" for cls in type(exc).__mro__)


def _refused_by_lightning(exc: BaseException) -> bool:
    """A check of Lightning's that it raises as a plain error, once the run's data or metrics exist.

    ``val_check_interval`` above an epoch's batch count (a ``ValueError`` of the fit loop), an
    ``EarlyStopping`` monitoring a metric the run does not log (``val/acc`` without validation, a
    misspelled key: its ``RuntimeError`` at the first epoch's end).
    """
    if not isinstance(exc, (ValueError, RuntimeError)) or "lightning.pytorch" not in sys.modules:
        return False  # raised before Lightning was loaded: none of its checks (nor an import of it, here)
    from mnistlab.lightning_private import count_refused_by_lightning, monitor_refused_by_lightning

    return count_refused_by_lightning(exc) or monitor_refused_by_lightning(exc)


def _spawned_own_error(text: str) -> str | None:
    """mnistlab's message in a spawned process's traceback (``trainer.strategy=ddp_spawn``), else None.

    ``torch.multiprocessing`` hands the parent only the child's traceback as text, whose last line names the
    error's class: ``mnistlab.errors.NonFiniteLossError: train/loss_step is nan at step 50 ...``.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    module = MnistlabError.__module__
    if lines and lines[-1].startswith(f"{module}.") and ": " in lines[-1]:
        name, message = lines[-1].split(": ", 1)
        return message if name.removeprefix(f"{module}.").isidentifier() else None
    return None


def _instantiation_key(exc: BaseException) -> str:
    text = str(exc)
    return text.rsplit(FULL_KEY, 1)[1].strip() if FULL_KEY in text else ""


def user_error(exc: BaseException) -> str | None:
    """The one-line message of a user error behind ``exc`` (configs wrap them), else None (a bug)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    # mnistlab's own message first, also when Hydra's instantiation error wraps it.
    if isinstance(own := own_error(exc), MnistlabError):
        return str(own)
    for seen in exception_chain(exc):
        if type(seen).__name__ == "ProcessRaisedException" and (spawned := _spawned_own_error(str(seen))):
            return spawned
        if isinstance(seen, MissingMandatoryValue):
            key = seen.full_key or "a setting"
            return f"{key} is required: add {key}=... to the command" + (
                " (a .ckpt file or a run folder)" if key == "ckpt_path" else ""
            )
        if _is_misconfiguration(seen) or _refused_by_lightning(seen):
            text = str(seen).strip()
            # train.py's Trainer is the config's (Hydra wraps its errors); the other scripts take accelerator=.
            wrapped = any(isinstance(e, InstantiationException) for e in exception_chain(exc))
            key = "trainer.accelerator" if wrapped else "accelerator"
            if text == NO_GPU:
                return f"{key}=gpu, but this machine has no usable GPU; use {key}=cpu"
            return _unavailable_accelerator(text, key) or text
        if isinstance(seen, InstantiationException) and isinstance(seen.__cause__, (ValueError, TypeError)):
            # A constructor refused a value of the config (Trainer(precision='foo'), MLP(head='x')): the user's.
            key, cause = _instantiation_key(seen), str(seen.__cause__).strip()
            return f"{key}: {cause}" if key and not cause.startswith(key) else cause
        if isinstance(seen, InstantiationException) and str(seen.__cause__).startswith("Requirement '"):
            # Lightning's optional requirement of a chosen setting (trainer.accelerator=tpu: torch_xla).
            return f"{_instantiation_key(seen) or 'a setting'} needs a package that is not installed: {seen.__cause__}"
    return None


def _unavailable_accelerator(text: str, key: str) -> str | None:
    """Lightning's "`MPSAccelerator` can not run on your system ..." as the setting and what this machine has."""
    found = UNAVAILABLE.fullmatch(text)
    if found is None:
        return None
    name = found[1].lower() if found[1] != "XLA" else "tpu"
    available = [a.strip().strip("'\"") for a in found[2].split(",") if a.strip()]
    has = f", only {', '.join(available)}" if available else ""
    use = " or ".join(f"{key}={a}" for a in available) or f"{key}=cpu"
    return f"{key}={name}, but this machine has no usable {DEVICES.get(name, name)}{has}; use {use}"


def one_line(exc: BaseException) -> str:
    """``ErrorType: first line`` of the user's error behind ``exc``, for records (MLflow tags, sweep summaries)."""
    lines = (user_error(exc) or str(exc)).strip().splitlines()
    return f"{type(own_error(exc)).__name__}: {lines[0] if lines else ''}"
