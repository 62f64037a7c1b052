"""Features that need an optional extra of ``pyproject.toml``: the one line that names the install command."""

from __future__ import annotations

import importlib

from mnistlab.errors import MnistlabError

# Config-group choices whose feature lives in an extra: (group, option) -> (modules it imports, extra).
GROUP_EXTRAS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("hparams_search", "optuna"): (("optuna",), "sweep"),
    ("hydra/launcher", "joblib"): (("hydra_plugins.hydra_joblib_launcher",), "sweep"),
    ("hydra/launcher", "submitit_local"): (("hydra_plugins.hydra_submitit_launcher", "submitit"), "sweep"),
    ("hydra/launcher", "submitit_slurm"): (("hydra_plugins.hydra_submitit_launcher", "submitit"), "sweep"),
    ("logger", "mlflow"): (("mlflow",), "mlflow"),
    ("logger", "tb_mlflow"): (("mlflow",), "mlflow"),
}
# How the messages name a module: the project's own name for it, else its pip name.
NAMES = {"mlflow": "MLflow", "optuna": "Optuna", "multipart": "python-multipart"}


def missing_extra(feature: str, extra: str, *modules: str) -> str | None:
    """``"<feature> needs <module>, which is not installed: pip install ..."``, or None when all import."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            name = NAMES.get(module, module.removeprefix("hydra_plugins.").replace("_", "-"))
            return f'{feature} needs {name}, which is not installed: pip install -e ".[{extra}]"'
    return None


def require(feature: str, extra: str, *modules: str) -> None:
    """Raises ``MnistlabError`` with the install line when a module of ``feature`` does not import."""
    if message := missing_extra(feature, extra, *modules):
        raise MnistlabError(message)
