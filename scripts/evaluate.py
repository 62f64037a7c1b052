"""Test a checkpoint and write its report: ``python scripts/evaluate.py ckpt_path=outputs/.../last.ckpt``.

The report goes into the checkpoint's own run folder, ``<run>/eval/<date>_<time>/``.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab.cli import register_resolvers, skip_final_collection, user_errors
from mnistlab.command_line import exit_on_mistake

register_resolvers()  # ${mnistlab.eval_dir:} in conf/evaluate.yaml


def run(cfg: DictConfig) -> float:
    from mnistlab.checkpoints import find_checkpoint
    from mnistlab.evaluation.evaluate import evaluate

    ckpt_path = find_checkpoint(cfg.ckpt_path)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    result = evaluate(ckpt_path, trainer, OmegaConf.to_container(cfg.data, resolve=True))
    print(result.text())
    print(f"\nwritten to {cfg.paths.output_dir}")
    return result.accuracy


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return run(cfg)


if __name__ == "__main__":
    exit_on_mistake(__file__, "evaluate")  # typos: one line with the fix, before Hydra runs
    skip_final_collection()
    main()
