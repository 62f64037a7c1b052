"""Time mnistlab against a plain PyTorch loop in one process: ``python benchmarks/benchmark.py [device=cuda]``.

Prints one table: (a) the plain loop, (b) the default run (the engine ``scripts/train.py``
picks), (b1) the same run forced per-step, (f) Lightning's floor (a bare LightningModule on the
same tensors, automatic optimization, no logging or callbacks), each with its ratio to (a).
"""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, open_dict

from mnistlab import process

ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}
ROOT = Path(__file__).resolve().parents[1]


def run(cfg: DictConfig) -> float:
    import timing as bm

    from mnistlab.composition import compose

    if cfg.device not in ACCELERATORS:
        raise ValueError(f"device={cfg.device!r} must be one of {sorted(ACCELERATORS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.trainer.max_epochs = cfg.warmup + cfg.epochs
    cfg.trainer.accelerator = ACCELERATORS[cfg.device]
    out = Path(cfg.paths.output_dir)
    runs = {}
    for engine in ("auto", "per_step"):  # the same config, each run in a subfolder of its own
        with open_dict(cfg):
            cfg.engine, cfg.paths.output_dir = engine, str(out / engine)
        runs[engine] = compose(cfg)
    optimizer = hydra.utils.instantiate(cfg.optimizer, _convert_="all")
    timings = bm.compare_pipelines(
        runs["auto"], runs["per_step"], lambda: hydra.utils.instantiate(cfg.model), optimizer, cfg.warmup, cfg.typical
    )
    print(bm.table(timings))
    extra = {}
    if cfg.startup_runs > 0:
        from startup import describe, startup_times

        overrides = [f"paths.data_dir={cfg.paths.data_dir}", f"trainer.accelerator={cfg.trainer.accelerator}"]
        extra["startup"] = startup_times(ROOT / "scripts" / "train.py", cfg.startup_runs, overrides)
        print(describe(extra["startup"]))
    if cfg.json:
        bm.write_results(Path(cfg.json), timings, str(runs["auto"].datamodule.train_set[0].device), extra)
    return timings[1].ratio


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> float:
    process.configure_job()  # as scripts/train.py: the same console, warnings and CUDA check
    with process.exit_on_user_error():
        return run(cfg)


if __name__ == "__main__":
    process.setup()
    main()
