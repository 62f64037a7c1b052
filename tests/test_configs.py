"""Every config group option composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from conftest import ROOT, write_idx_set
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

CONF = ROOT / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_train(overrides: list[str], tmp_path: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        # ${hydra:...} resolvers need a running app; pin the paths they would give.
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(tmp_path)
        del cfg["hydra"]
    return cfg


CASES = (
    [f"model={m}" for m in options("model")]
    + [f"optimizer={o}" for o in options("optimizer")]
    + [f"scheduler={s}" for s in options("scheduler")]
    + [f"data/augment={a}" for a in options("data/augment")]
    + [f"logger={lg}" for lg in options("logger")]
    + [f"experiment={e}" for e in options("experiment")]
    + [f"data={d}" for d in options("data")]
    + [f"trainer={t}" for t in options("trainer")]
)


@pytest.mark.parametrize("override", CASES)
def test_group_option_composes_and_instantiates(override: str, tmp_path: Path) -> None:
    cfg = compose_train([override], tmp_path)
    write_idx_set(Path(cfg.data.root))
    datamodule = hydra.utils.instantiate(cfg.data)
    net = hydra.utils.instantiate(cfg.model)
    optimizer = hydra.utils.instantiate(cfg.optimizer, _convert_="all")
    scheduler = hydra.utils.instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None
    system = hydra.utils.instantiate(cfg.system, _convert_="all", net=net, optimizer=optimizer, scheduler=scheduler)
    assert system.configure_optimizers() is not None
    assert datamodule.hparams.batch_size >= 1
    for c in {**cfg.get("logger", {}), **cfg.get("callbacks", {})}.values():
        assert hydra.utils.instantiate(c) is not None
    trainer_cfg = {k: v for k, v in cfg.trainer.items() if k != "_target_"}
    assert trainer_cfg["max_epochs"] >= 1


def test_notebook_experiments_are_the_notebook_recipe(tmp_path: Path) -> None:
    for name, hidden_units in (("notebook_linear", 0), ("notebook_hidden", 100)):
        cfg = compose_train([f"experiment={name}"], tmp_path)
        assert (cfg.model.hidden_units, cfg.model.init, cfg.system.head) == (hidden_units, "keras", "sigmoid")
        assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
        assert (cfg.data.batch_size, cfg.data.val_size, cfg.trainer.max_epochs) == (32, 0, 5)


def test_best_hidden_keeps_the_notebook_network(tmp_path: Path) -> None:
    for data in ("mnist", "fashion_mnist"):
        cfg = compose_train(["experiment=best_hidden", f"data={data}"], tmp_path)
        assert (cfg.model.hidden_units, cfg.system.head) == (100, "softmax")
        assert cfg.data.augment._target_ == "mnistlab.data.augment.RandomAffine"
        # Chosen on validation: light augmentation helps MNIST and hurts Fashion-MNIST (identity there).
        assert bool(hydra.utils.instantiate(cfg.data.augment)) == (data == "mnist")
        assert cfg.data.dataset == data and cfg.data.val_size == 5000
        assert cfg.scheduler.epochs == cfg.trainer.max_epochs and cfg.scheduler.batch_size == cfg.data.batch_size
    default = compose_train([], tmp_path)
    assert "augment" not in default.data and default.get("scheduler") is None  # both off by default
