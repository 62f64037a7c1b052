"""Time mnistlab against a plain PyTorch loop in one process: ``python scripts/benchmark.py [device=cuda]``."""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from mnistlab.cli import user_errors
from mnistlab.composition import compose

ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}


def run(cfg: DictConfig) -> float:
    from mnistlab import benchmark as bm

    if cfg.device not in ACCELERATORS:
        raise ValueError(f"device={cfg.device!r} must be one of {sorted(ACCELERATORS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.trainer.max_epochs = cfg.warmup + cfg.epochs
    cfg.trainer.accelerator = ACCELERATORS[cfg.device]
    run_ = compose(cfg)  # exactly what scripts/train.py trains
    trainer, system, datamodule = run_.trainer, run_.system, run_.datamodule
    optimizer = hydra.utils.instantiate(cfg.optimizer, _convert_="all")
    timings = bm.compare_pipelines(
        trainer, system, datamodule, lambda: hydra.utils.instantiate(cfg.model), optimizer, cfg.warmup, cfg.typical
    )
    print(bm.table(timings))
    extra = {}
    if cfg.startup_runs > 0:
        from mnistlab.startup import describe, startup_times

        overrides = [f"paths.data_dir={cfg.paths.data_dir}", f"trainer.accelerator={cfg.trainer.accelerator}"]
        extra["startup"] = startup_times(Path(__file__).with_name("train.py"), cfg.startup_runs, overrides)
        print(describe(extra["startup"]))
    if cfg.json:
        bm.write_results(Path(cfg.json), timings, str(datamodule.train_set[0].device), extra)
    return timings[1].ratio


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return run(cfg)


if __name__ == "__main__":
    main()
