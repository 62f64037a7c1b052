"""Predict digits: ``python scripts/predict.py ckpt_path=outputs/.../last.ckpt index=998`` (or ``image=FILE``)."""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab import process
from mnistlab.command_line import exit_on_mistake


def run(cfg: DictConfig) -> None:
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.predict import predict, to_json, to_text
    from mnistlab.evaluation.predictors import load_predictor

    if cfg.format not in ("text", "json"):
        raise MnistlabError(f"format={cfg.format} must be text or json")
    # A checkpoint, a run folder, an ONNX file, or several checkpoints as one ensemble (a sweep folder, a list).
    predictor = load_predictor(cfg.ckpt_path, cfg.accelerator)
    index = OmegaConf.to_container(cfg.index) if OmegaConf.is_list(cfg.index) else cfg.index
    image = OmegaConf.to_container(cfg.image) if OmegaConf.is_list(cfg.image) else cfg.image
    image = None if image is None else [str(i) for i in image] if isinstance(image, list) else str(image)
    skipped: list[str] = []  # unreadable files among several: the others are still predicted
    predictions = predict(predictor, index, image, OmegaConf.to_container(cfg.data), skipped)
    print(to_json(predictions) if cfg.format == "json" else to_text(predictions, predictor.head))
    for error in skipped:
        print(f"warning: skipped {error}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    process.configure_job()
    with process.exit_on_user_error(), process.hint_on_interrupt(lambda: "interrupted"):
        run(cfg)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "predict")  # typos: one line with the fix, before Hydra runs
    main()
