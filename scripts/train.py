"""Train and test one configuration: ``python scripts/train.py model=hidden trainer.accelerator=gpu``."""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab.cli import user_errors


def build_and_run(cfg: DictConfig) -> float:
    import lightning.pytorch as pl

    from mnistlab.training import fit_and_test

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    net = hydra.utils.instantiate(cfg.model)
    system = hydra.utils.instantiate(
        cfg.system,
        _convert_="all",
        net=net,
        optimizer=hydra.utils.instantiate(cfg.optimizer, _convert_="all"),
        class_names=list(datamodule.classes),
    )
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    metrics = fit_and_test(
        trainer,
        system,
        datamodule,
        Path(cfg.paths.output_dir),
        ckpt_path=cfg.ckpt_path,
        hparams=OmegaConf.to_container(cfg, resolve=True),
    )
    return metrics["test/acc"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return build_and_run(cfg)


if __name__ == "__main__":
    main()
