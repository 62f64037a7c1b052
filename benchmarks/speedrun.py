"""Time to 99%: ``python benchmarks/speedrun.py [device=cuda] [seeds=10]``.

For each seed, in one process and alternating: (r) the MNIST speed record's recipe as a plain
PyTorch loop (``record_loop.py``), (m) ``experiment=speedrun`` and (mr) ``experiment=speedrun_record``
(the record's recipe) through mnistlab's own path, ``compose`` and ``fit_and_test``. Prints each
seed's training time (data already on the device, as the record measures it) and test accuracy,
their mean, min and std over the seeds, and the median times of (m) and (mr) against (r).
"""

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnistlab import process

ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}


def run(cfg: DictConfig) -> float:
    import speedrun_timing as st
    from record_loop import accuracy, load_mnist, train_record

    if cfg.device not in ACCELERATORS:
        raise ValueError(f"device={cfg.device!r} must be one of {sorted(ACCELERATORS)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.trainer.accelerator = ACCELERATORS[cfg.device]
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    configs = {"(m)": cfg}
    if cfg.record:  # the same entry config and overrides, with the record's preset
        overrides = [*HydraConfig.get().overrides.task, "experiment=speedrun_record"]
        configs["(mr)"] = hydra.compose("speedrun", overrides=overrides)
    for c in configs.values():
        c.trainer.accelerator = cfg.trainer.accelerator
        if cfg.steps:  # Lightning's own limit (it makes the run per-step)
            c.trainer.limit_train_batches = cfg.steps
    train, test = load_mnist(Path(cfg.paths.data_dir) / "mnist", device)
    out = Path(cfg.paths.output_dir)
    train_record(train, seed=0, steps=cfg.warmup_steps)  # kernel set-up, not timed
    for name, c in configs.items():
        st.warm_up(c, out / "warmup" / name.strip("()"), cfg.warmup_steps)
    results = st.Results(list(configs))
    for i, seed in enumerate(range(1, cfg.seeds + 1)):
        names = ["(r)", *configs]
        for name in names[i % len(names) :] + names[: i % len(names)]:  # each pipeline goes first in turn
            if name == "(r)":
                net, seconds = train_record(train, seed, cfg.steps)
                results.add(seed, name, seconds, accuracy(net, test))
            else:
                results.add(seed, name, *st.time_mnistlab(configs[name], seed, out / name.strip("()") / str(seed)))
    print(results.table())
    if cfg.json:
        results.write(Path(cfg.json), str(device))
    return results.ratio("(m)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="speedrun")
def main(cfg: DictConfig) -> float:
    process.configure_job()  # as scripts/train.py: the same console, warnings and CUDA check
    with process.exit_on_user_error():
        return run(cfg)


if __name__ == "__main__":
    process.setup()
    main()
