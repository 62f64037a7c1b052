"""Serve a model over HTTP: ``python scripts/serve.py ckpt_path=outputs/.../last.ckpt [port=8000]``.

``POST /predict`` takes an image (file upload or base64 JSON) and returns predict.py's JSON object;
``GET /`` is a page to draw digits on. Needs the serve extra: ``pip install -e ".[serve]"``.
"""

if __name__ == "__main__":  # first: a Ctrl-C during the imports below exits with one line, not a traceback
    from mnistlab.process import interrupts_while_starting

    interrupts_while_starting()

import hydra
from omegaconf import DictConfig, OmegaConf

from mnistlab import process
from mnistlab.command_line import exit_on_mistake


def run(cfg: DictConfig) -> None:
    from mnistlab.extras import require

    require("serving", "serve", "litserve", "fastapi", "multipart")
    from mnistlab.serving.server import serve

    # A list of checkpoints (or a sweep folder) is served as one ensemble.
    model = OmegaConf.to_object(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else cfg.ckpt_path
    with process.stop_server_on_signals():
        serve(model, cfg.host, int(cfg.port), cfg.accelerator, cfg.max_batch_size, cfg.batch_timeout, cfg.timeout)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    process.configure_job()
    with process.exit_on_user_error(), process.hint_on_interrupt(lambda: "interrupted"):
        run(cfg)


if __name__ == "__main__":
    process.setup()
    exit_on_mistake(__file__, "serve")  # typos: one line with the fix, before Hydra runs
    main()
