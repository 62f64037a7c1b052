"""Train and test one configuration: ``python scripts/train.py model=hidden trainer.accelerator=gpu``.

``python scripts/train.py resume=RUN_DIR`` continues an interrupted run in its own folder.
"""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

from contextlib import nullcontext

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnistlab import process
from mnistlab.command_line import exit_on_mistake
from mnistlab.resume.run import interrupted_hint


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    process.configure_job()
    # In a sweep a failing job must not exit the process: the sweep records it and goes on.
    hydra_cfg = HydraConfig.get()
    single = hydra_cfg.mode != RunMode.MULTIRUN
    errors = process.exit_on_user_error() if single else nullcontext()
    interrupted = process.hint_on_interrupt(lambda: interrupted_hint(cfg.paths.output_dir)) if single else nullcontext()
    with errors, interrupted, process.ddp_children_join_this_job(__file__):
        from mnistlab.training import train  # here: torch and Lightning load once the command line is checked

        return train(cfg, hydra_cfg.overrides.task, job_num=None if single else hydra_cfg.job.num)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "train")  # typos: one line with the fix, before Hydra runs
    main()
