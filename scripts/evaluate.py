"""Test a checkpoint and write its report: ``python scripts/evaluate.py ckpt_path=outputs/.../last.ckpt``."""

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab.cli import user_errors


def run(cfg: DictConfig) -> float:
    from mnistlab.evaluation.evaluate import evaluate

    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    result = evaluate(cfg.ckpt_path, trainer, OmegaConf.to_container(cfg.data, resolve=True))
    print(result.text())
    print(f"\nwritten to {cfg.paths.output_dir}")
    return result.accuracy


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return run(cfg)


if __name__ == "__main__":
    main()
