"""``resume=RUN_DIR``: the interrupted run's own config, plus the few overrides a continued run can take."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from mnistlab.checkpoints import resume_files
from mnistlab.errors import MnistlabError

# What may change when a run continues: how long it trains and where. Anything else would make the
# continued run a different experiment in the same folder.
RESUMABLE = ("trainer.max_epochs", "trainer.accelerator", "trainer.devices")
# Overrides that say how to run or show it, never what is trained.
IGNORED_PREFIXES = ("hydra.", "resume=", "callbacks.progress_bar.refresh_rate=", "paths.data_dir=")


def resumed_config(run_dir: str, cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The saved config of ``run_dir``, set to continue from its ``last.ckpt``, with ``RESUMABLE`` overrides applied.

    Args:
        run_dir: The interrupted (or finished) run's folder.
        cfg: This launch's composed config, where the overrides' values are read.
        overrides: This launch's command-line overrides (``HydraConfig.get().overrides.task``).

    Raises:
        MnistlabError: For an override a continued run cannot take, or a ``trainer.max_epochs``
            that would end before the checkpoint or stretch a run whose LR schedule was sized
            for its original length.
    """
    config, last = resume_files(run_dir)
    saved = OmegaConf.load(config)
    epochs = saved.trainer.max_epochs  # the run's own, before the overrides
    for override in overrides:
        if override.startswith(IGNORED_PREFIXES):
            continue
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in RESUMABLE:
            raise MnistlabError(
                f"resume={run_dir} continues the run as it was configured and cannot take {key}; "
                f"only {', '.join(RESUMABLE)} may change (start a new run with ckpt_path=... instead)"
            )
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    if saved.get("scheduler") and saved.trainer.max_epochs != epochs:
        raise MnistlabError(
            f"resume={run_dir} cannot change trainer.max_epochs: its scheduler was sized for "
            f"{epochs} epochs; start a new run with ckpt_path=... instead"
        )
    saved.paths.output_dir, saved.ckpt_path, saved.resume = str(config.parents[1]), str(last), run_dir
    return saved
