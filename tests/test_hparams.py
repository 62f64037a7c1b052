"""The HParams tab and MLflow's params: a short record a person can read, swept keys first."""

from __future__ import annotations

import pytest
from conftest import ROOT, TrainedRun
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from mnistlab.hparams import MAX_HPARAMS, run_hparams

pytestmark = pytest.mark.slow  # real-MNIST runs; the lowest-versions CI step skips them

# Paths that resolve without a running Hydra app; none of them may reach the record.
PATHS = ("paths.data_dir=/data/dir", "paths.output_dir=/out/dir", "paths.mlflow_dir=/ml/dir")


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=[*overrides, *PATHS]), resolve=True)


def choices(*overrides: str) -> dict:
    """Hydra's config-group choices for ``overrides`` (what a launch finds in ``hydra.runtime.choices``)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = compose("train", overrides=[*overrides, *PATHS], return_hydra_config=True)
        return OmegaConf.to_container(config.hydra.runtime.choices)


def test_tensorboard_hparams_tab_holds_the_short_record(notebook_hidden_run: TrainedRun) -> None:
    events = EventAccumulator(str(notebook_hidden_run.dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.SESSION_START_INFO_TAG]
    hparams = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert len(hparams) <= MAX_HPARAMS and hparams["optimizer.lr"].number_value == 1e-3
    assert hparams["model"].string_value == "hidden" and hparams["system.head"].string_value == "sigmoid"
    assert hparams["data.val_size"].number_value == 0
    assert not [k for k in hparams if "_target_" in k or k.startswith(("callbacks", "paths", "logger"))]
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "_target_: mnistlab.models.MLP" in config  # the full config, as text


def test_record_names_what_a_run_trains_and_no_paths() -> None:
    overrides = ["experiment=best_hidden"]
    record = run_hparams(composed(*overrides), overrides, choices(*overrides))
    assert record == {
        "experiment": "best_hidden",
        "model": "hidden",
        "model.hidden_units": 100,
        "model.init": "torch",
        "system.head": "softmax",
        "system.label_smoothing": 0.1,
        "optimizer": "adamw",
        "optimizer.lr": 3e-3,
        "optimizer.weight_decay": 1e-4,
        "scheduler": "one_cycle",
        "scheduler.pct_start": 0.25,
        "scheduler.div_factor": 25.0,
        "scheduler.final_div_factor": 1e4,
        "scheduler.cycle_momentum": True,
        "data.batch_size": 128,
        "trainer.max_epochs": 20,
        "data.val_size": 5000,
        "data.augment": "degrees=5.0 translate=0.05 scale=0.05",
        "data.normalize": True,
        "trainer.precision": "32-true",
        "trainer.devices": 1,
        "seed": 42,
        "data.dataset": "mnist",
    }


def test_swept_keys_come_first_and_run_settings_stay_out() -> None:
    overrides = ["optimizer=sgd", "model.hidden_units=32", "data/augment=affine", "trainer.limit_train_batches=2"]
    overrides += ["logger=csv", "callbacks.progress_bar.refresh_rate=0", "paths.data_dir=/data/dir"]
    record = run_hparams(composed(*overrides), overrides, choices(*overrides))
    assert list(record)[:3] == ["optimizer", "model.hidden_units", "data.augment"]
    assert record["optimizer"] == "sgd" and record["optimizer.momentum"] == 0.9 and record["model.hidden_units"] == 32
    assert len(record) <= MAX_HPARAMS
    assert not [v for v in record.values() if isinstance(v, str) and "/" in v]
    assert not [k for k in record if k.startswith(("trainer.limit", "logger", "callbacks", "paths"))]


def test_a_group_given_on_the_command_line_is_named_by_its_choice() -> None:
    # Before: by its class, so model=linear,hidden showed "mlp" twice and data=mnist,fashion_mnist the same name.
    overrides = ["model=linear", "data=fashion_mnist"]
    record = run_hparams(composed(*overrides), overrides, choices(*overrides))
    assert (record["model"], record["data"]) == ("linear", "fashion_mnist")


def test_new_model_settings_are_picked_up_and_the_record_stays_short() -> None:
    config = composed()
    config["model"] |= {f"width_{i}": i for i in range(30)} | {"weights": "/some/file.pt", "_partial_": True}
    record = run_hparams(config, ["optimizer.lr=0.5"])  # no choices: groups named by their classes
    assert record["model"] == "mlp"
    assert len(record) == MAX_HPARAMS and next(iter(record)) == "optimizer.lr"
    assert "model.width_0" in record and "model.weights" not in record and "model._partial_" not in record


def test_a_fold_of_a_cross_validation_is_named_even_when_a_preset_sets_it() -> None:
    config = composed()
    assert "data.folds" not in run_hparams(config, [])  # no cross-validation, no fold columns
    config["data"] |= {"folds": 5, "fold": 3, "val_size": 0}
    record = run_hparams(config, [])
    assert record["data.folds"] == 5 and record["data.fold"] == 3
