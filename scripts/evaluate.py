"""Test a checkpoint and write its report: ``python scripts/evaluate.py ckpt_path=outputs/.../last.ckpt``.

The report goes into the checkpoint's own run folder, ``<run>/eval/<date>_<time>/``. A sweep folder
(``ckpt_path=multirun/...``, e.g. the folds of ``cv=5``) or a list (``ckpt_path=[run1,run2]``) is tested
as one ensemble, the mean of the members' probabilities, with one line per member.
"""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab import process
from mnistlab.command_line import exit_on_mistake


def run(cfg: DictConfig) -> float:
    from mnistlab.checkpoint_paths import find_checkpoints
    from mnistlab.composition import build_trainer
    from mnistlab.evaluation.evaluate import evaluate
    from mnistlab.run_folders import discard_run_dir

    ckpt_paths = find_checkpoints(cfg.ckpt_path)  # several (a sweep folder, a list): one ensemble
    trainer = build_trainer(cfg)
    evaluation = evaluate(ckpt_paths, trainer, OmegaConf.to_container(cfg.data, resolve=True))
    accuracy = evaluation.result.accuracy
    if not trainer.is_global_zero:  # DDP's other ranks: the report is printed once
        return accuracy
    if trainer.fast_dev_run:  # Lightning's smoke test: its few batches are no result
        print(f"fast_dev_run: accuracy {accuracy:.4f} on a few batches, a smoke test: nothing written")
        discard_run_dir()  # the report's folder, Hydra's records alone
        return accuracy
    print(evaluation.text())
    print(f"\nwritten to {cfg.paths.output_dir}")
    return accuracy


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    process.configure_job()
    # An interrupted report is removed: half-written (no metrics.json), it would read as a report.
    with process.exit_on_user_error(), process.hint_on_interrupt(lambda: "interrupted", discard=True):
        return run(cfg)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "evaluate")  # typos: one line with the fix, before Hydra runs
    main()
