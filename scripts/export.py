"""Export for deployment: ``python scripts/export.py ckpt_path=outputs/.../last.ckpt format=onnx|torchscript``.

Writes ``model.onnx`` (or ``model.pt``) beside the checkpoint, or into ``output_dir=...``. A sweep folder
(e.g. the folds of ``cv=5``) is exported into that folder as one ensemble: the mean of its jobs' probabilities.
"""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab import process
from mnistlab.command_line import exit_on_mistake


def run(cfg: DictConfig) -> str:
    from mnistlab.checkpoint_paths import find_checkpoints
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.export import CHECK_IMAGES, export

    ckpt_paths = find_checkpoints(cfg.ckpt_path)  # several (a sweep folder, a list): one ensemble
    output_dir = cfg.output_dir or ckpt_paths[0].parent  # beside the checkpoint by default
    if not cfg.output_dir and len(ckpt_paths) > 1:  # an ensemble: into its sweep folder; a list names its own
        if OmegaConf.is_list(cfg.ckpt_path):
            raise MnistlabError("an ensemble of listed checkpoints has no folder of its own: add output_dir=...")
        output_dir = cfg.ckpt_path
    path, diff, replaced = export(ckpt_paths, output_dir, cfg.format, OmegaConf.to_container(cfg.data), cfg.tolerance)
    print(f"wrote {path}: (N, 1, 28, 28) pixels in [0, 1] -> (N, 10) probabilities")
    if replaced:
        print(replaced)
    print(f"checked on {CHECK_IMAGES} test images: max |{cfg.format} - pytorch| = {diff:.1e}")
    return str(path)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> str:
    process.configure_job()
    with process.exit_on_user_error(), process.hint_on_interrupt(lambda: "interrupted"):
        return run(cfg)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "export")  # typos: one line with the fix, before Hydra runs
    main()
