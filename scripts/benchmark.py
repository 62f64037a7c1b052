"""Time mnistlab against a plain PyTorch loop in one process: ``python scripts/benchmark.py [device=cuda]``."""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from train import build

from mnistlab.cli import user_errors

ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}


def run(cfg: DictConfig) -> float:
    from mnistlab import benchmark as bm

    if cfg.device not in ACCELERATORS:
        raise ValueError(f"device={cfg.device!r} must be one of {sorted(ACCELERATORS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.trainer.max_epochs = cfg.warmup + cfg.epochs
    cfg.trainer.accelerator = ACCELERATORS[cfg.device]
    trainer, system, datamodule = build(cfg)  # exactly what scripts/train.py trains
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, bm.EpochTimer))
    trainer.fit(system, datamodule=datamodule)
    steps = timer.steps_per_epoch
    mnistlab = bm.Timing("(b) mnistlab, default callbacks + logger", *timer.times, steps, cfg.warmup)

    images, labels = datamodule.train_set  # the same tensors, already on the device
    recipe = dict(optimizer=hydra.utils.instantiate(cfg.optimizer, _convert_="all"), loss=system.loss)
    walls, cpus = bm.plain_loop(
        hydra.utils.instantiate(cfg.model).to(images.device), **recipe, images=images, labels=labels,
        epochs=cfg.warmup + cfg.epochs, batch_size=cfg.data.batch_size, steps=steps, seed=cfg.seed,
    )  # fmt: skip
    timings = [bm.Timing("(a) plain PyTorch loop", walls, cpus, steps, cfg.warmup), mnistlab]
    if cfg.typical:
        from mnistlab.typical_lightning import TypicalModule, fit_typical

        timer = bm.EpochTimer()
        module = TypicalModule(hydra.utils.instantiate(cfg.model), **recipe)
        train_idx, _ = datamodule.split_indices()
        accelerator = "gpu" if images.is_cuda else "cpu"
        fit_typical(module, datamodule.root, train_idx, [timer], cfg.warmup + cfg.epochs, accelerator, steps=steps)
        timings.append(bm.Timing("(c) typical Lightning pipeline", *timer.times, steps, cfg.warmup))
    print(bm.table(bm.compare(timings)))

    extra = {}
    if cfg.startup_runs > 0:
        from mnistlab.startup import startup_times

        overrides = [f"paths.data_dir={cfg.paths.data_dir}", f"trainer.accelerator={cfg.trainer.accelerator}"]
        extra["startup"] = s = startup_times(Path(__file__).with_name("train.py"), cfg.startup_runs, overrides)
        print(
            f"start-up: first training step {s['first_step_median_s']:.2f} s, `import lightning` "
            f"{s['import_lightning_median_s']:.2f} s (medians of {cfg.startup_runs}), ratio {s['ratio']:.2f}x"
        )
    if cfg.json:
        bm.write_results(Path(cfg.json), timings, str(images.device), extra)
    return timings[1].ratio


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return run(cfg)


if __name__ == "__main__":
    main()
