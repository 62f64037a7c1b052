"""Launchers that cannot run on this machine are refused in one line, before the sweep folder is made."""

from __future__ import annotations

import shutil
import sys

from omegaconf import DictConfig

from mnistlab.user_errors import EXIT_USER_ERROR


def check_launcher(config: DictConfig) -> None:
    """Exits with one ``error:`` line (code 2) when ``hydra/launcher=submitit_slurm`` finds no SLURM here.

    Without this, submitit fails on the first job's ``sbatch`` call with a traceback.
    """
    target = str(config.hydra.launcher.get("_target_", ""))
    if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        print(
            "error: hydra/launcher=submitit_slurm needs SLURM, but there is no sbatch command on this machine; "
            "run on a SLURM login node, or use hydra/launcher=submitit_local or joblib here",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)
