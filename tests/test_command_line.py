"""A newcomer's typos on every entry script: one ``error:`` line with the fix, exit code 2, before any work.

Each row runs the real script in an empty folder: nothing may be printed but the one line, no Hydra
internals (``HYDRA_FULL_ERROR``, ``full_key``, search paths), and no run folder may be left behind.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, run_script
from hydra import initialize_config_dir

from mnistlab.command_line import config_mistake
from mnistlab.config_tree import ConfigTree
from mnistlab.spelling import distance, nearest

# (script, arguments, the fix the line must name)
CASES = [
    ("train.py", "optimizer.lrr=0.1", "did you mean optimizer.lr?"),
    ("train.py", "max_epochs=3", "max_epochs is not a top-level setting; did you mean trainer.max_epochs?"),
    ("train.py", "model=hiden", "did you mean model=hidden? (cnn, hidden, linear, record_cnn)"),
    ("train.py", "lr=0.01", "did you mean optimizer.lr?"),
    ("train.py", "trainer.max_epoch=3", "did you mean trainer.max_epochs?"),
    ("train.py", "model.hidden_unit=50", "not a setting of mnistlab.models.MLP; did you mean model.hidden_units?"),
    ("train.py", "optimzer.lr=0.1", "did you mean optimizer.lr?"),
    ("train.py", "data/augment=afine", "did you mean data/augment=affine?"),
    # A misspelled group (experiment: packaged at the top) was answered with hydra.runtime.choices.experiment.
    ("train.py", "experment=cnn", "experment is not a top-level setting; did you mean experiment=cnn?"),
    ("train.py", "augment=affine", "did you mean data/augment=affine?"),
    ("train.py", "optimizer.weight_decy=0.1", "did you mean optimizer.weight_decay?"),
    ("train.py", "optimizer.amsgrad=true", "add it with +optimizer.amsgrad=true"),
    ("train.py", "+trainer.max_epochs=3", "give it without the +"),
    # A group of the defaults list with a + (Hydra: "Multiple values for scheduler", two lines, exit 1).
    ("train.py", "+scheduler=cosine", "scheduler=null); give it without the +: scheduler=cosine"),
    ("train.py", "++logger=csv", "logger=tensorboard); give it without the +: logger=csv"),
    # A misspelled key added with a +: every job of the sweep would have been the same run.
    ("train.py", "-m +seeds=1,2", "seeds is not a top-level setting; did you mean seed?"),
    # A deletion of what the run needs (before: an OmegaConf traceback, exit 1, or a failed job in a sweep).
    ("train.py", "~model", "~model leaves the run without its model (mnistlab.models.MLP), which it needs"),
    ("train.py", "-m ~seed", "~seed: data.seed refers to it, so the run could not read data.seed"),
    # A group set to null (Hydra: "Config group override must be a string or a list. Got NoneType", a traceback).
    ("train.py", "logger=null", "logger=null: Hydra takes no null for a config group; give ~logger to run without one"),
    ("train.py", "model=null", "model=null: the run needs a model; choose one: cnn, hidden, linear, record_cnn"),
    # Another script's setting: it named Hydra's hydra.job_logging.formatters.simple.format, or the keys alone.
    ("train.py", "format=onnx", "format is a setting of export.py and predict.py, not of train.py"),
    ("train.py", "index=1", "index is a setting of predict.py, not of train.py"),
    ("train.py", "trainer.max_epochs=abc", "trainer.max_epochs='abc' is not an integer"),
    ("train.py", "trainer.max_epochs=2.5", "is not an integer"),
    ("train.py", "optimizer.lr=fast", "optimizer.lr='fast' is not a number"),
    ("train.py", "trainer.enable_progress_bar=maybe", "is not true or false"),
    ("train.py", "-m model=linear,hiden", "did you mean model=hidden?"),
    ("train.py", "-m optimizer=adam,sdg trainer.max_epochs=1", "did you mean optimizer=sgd?"),
    ("train.py", "-m seed=1,2,x", "seed='x' is not an integer"),
    ("train.py", "-m model=hidden,linear model=linear", "model=hidden,linear is replaced by model=linear, given after"),
    (
        "train.py",
        "model.channels=[8,16]",
        "MLP (allowed: hidden_units, num_classes, init); model=cnn has it",
    ),
    ("train.py", "data.augment.degrees=3", "data.augment is not set in the config; data/augment=affine has it"),
    # Hydra's own settings and groups, checked the same way (Hydra: six lines or a traceback).
    ("train.py", "hydra/launcher=jobib", "did you mean hydra/launcher=joblib?"),
    ("train.py", "-m hydra.launcher.n_jobs=2", "BasicLauncher (it takes no settings); hydra/launcher=joblib has it"),
    ("train.py", "-m hydra/launcher=joblib hydra.launcher.n_job=2", "did you mean hydra.launcher.n_jobs?"),
    ("train.py", "-m hydra.sweeper.n_trials=3", "hparams_search=optuna has it"),
    ("train.py", "hydra.job.chdir=maybe", "hydra.job.chdir='maybe': Value 'maybe' is not a valid bool (type str)"),
    ("train.py", "hydra.job.env_set.FOO=1", "add it with +hydra.job.env_set.FOO=1"),
    ("train.py", "hydra.run.dir=/proc/mnistlab/run", "hydra.run.dir=/proc/mnistlab/run: cannot make a folder in /proc"),
    ("train.py", "paths.output_dir=/tmp/x", "the run's folder is Hydra's; give hydra.run.dir=..."),
    ("evaluate.py", "ckpt=run", "did you mean ckpt_path?"),
    ("evaluate.py", "ckpt_path=run trainer.acelerator=cpu", "did you mean trainer.accelerator?"),
    ("evaluate.py", "ckpt_path=run data=fashion_mnist", "evaluate.py takes the dataset from the checkpoint; drop it"),
    ("serve.py", "ckpt_path=run trainer=ddp", "serve.py has no trainer to choose (its groups: paths); drop it"),
    ("predict.py", "ckpt_path=run indx=998", "did you mean index?"),
    ("export.py", "ckpt_path=run formt=onnx", "did you mean format?"),
    ("export.py", "ckpt_path=run tolerance=abc", "tolerance='abc' is not a number"),
    ("serve.py", "ckpt_path=run prt=8000", "did you mean port?"),
    ("serve.py", "ckpt_path=run port=abc", "port='abc' is not an integer"),
]


def run(script: str, args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script(script, *args.split(), cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[subprocess.CompletedProcess, Path]]:
    folders = [tmp_path_factory.mktemp("typo") for _ in CASES]
    with ThreadPoolExecutor(2) as pool:
        jobs = [(s, a, f) for (s, a, _), f in zip(CASES, folders, strict=True)]
        done = list(pool.map(lambda job: run(*job), jobs))
    return list(zip(done, folders, strict=True))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{s}:{a}" for s, a, _ in CASES])
def test_typo_is_one_line_with_the_fix(results: list, i: int) -> None:
    result, folder = results[i]
    _, _, fix = CASES[i]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert fix in lines[0], lines[0]
    for internal in ("HYDRA_FULL_ERROR", "full_key", "provider=", "Traceback", "object_type"):
        assert internal not in lines[0]
    assert list(folder.iterdir()) == [], "a folder was left behind"


def test_plus_key_stays_available(tmp_path: Path, monkeypatch) -> None:
    """``+key=value`` for an argument the config lacks passes the check, and Hydra adds it."""
    monkeypatch.chdir(tmp_path)  # logger=mlflow's ${hydra:sweep.dir} makes multirun/<date>/<time> where it runs
    train = ROOT / "scripts" / "train.py"
    assert config_mistake(train, "train", ["max_epochs=3"])  # the check runs in this process (tree composed)
    assert config_mistake(train, "train", ["+optimizer.amsgrad=true"]) is None
    # A node added with its class: its arguments are checked against that class.
    early = "+callbacks.early._target_=lightning.pytorch.callbacks.EarlyStopping"
    assert config_mistake(train, "train", [early, "+callbacks.early.monitor=val/acc"]) is None
    typo = config_mistake(train, "train", [early, "+callbacks.early.monitr=x"])
    assert "did you mean +callbacks.early.monitor?" in typo
    # Passed here, then Hydra's "Config group override must be a string or a list. Got NoneType" traceback.
    assert config_mistake(train, "train", ["scheduler=null"]).endswith("give ~scheduler to run without one")
    hydra_settings = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+hydra.sweeper.params.seed='1,2'"]
    for valid in (
        ["logger=[tensorboard,csv]"],
        ["-m", "logger=mlflow,[tensorboard,csv]"],
        ["+tag=a"],  # a new top-level key near no setting: added, as Hydra does
        ["~callbacks.model_checkpoint", "~logger"],  # what the run can go without
        hydra_settings,
        ["+hydra.job.env_set.FOO=1", f"hydra.run.dir={tmp_path}/new/run", "hydra.job.chdir=true"],
        ["hydra.verbose=mnistlab"],  # typed Any in Hydra's schema: a bool, a logger's name or a list of them
        ["hydra.verbose=[__main__,hydra]"],
    ):
        assert config_mistake(train, "train", valid) is None, valid
    result = run("train.py", "+optimizer.amsgrad=true --cfg job", tmp_path)
    assert result.returncode == 0 and "amsgrad: true" in result.stdout, result.stderr


def test_removing_an_optional_group_runs_without_it(tmp_path: Path) -> None:
    """``~scheduler`` was refused as "scheduler is not a top-level setting"; Hydra removes the group, and the run
    trains without a schedule, as with ``scheduler=null``, also where an experiment chose one."""
    train = ROOT / "scripts" / "train.py"
    for valid in (["~scheduler"], ["~scheduler=null"], ["experiment=cnn", "~scheduler"], ["~experiment"]):
        assert config_mistake(train, "train", valid) is None, valid
    assert config_mistake(train, "train", ["experiment=cnn", "~scheduler=cosine"]) == (
        "~scheduler=cosine: the run chooses scheduler=one_cycle, so there is no scheduler=cosine to remove; "
        "~scheduler alone removes it"
    )
    assert config_mistake(train, "train", ["~optimizer"]).startswith("~optimizer leaves the run without its optimizer")
    result = run("train.py", "experiment=cnn ~scheduler --cfg job", tmp_path)
    assert result.returncode == 0 and "scheduler:" not in result.stdout and "OneCycle" not in result.stdout
    assert "model:\n  _target_: mnistlab.models.CNN" in result.stdout, result.stdout[-2000:]  # the rest of it


def test_removals_cost_at_most_one_composition_more(monkeypatch) -> None:
    """Each ``~group`` composed the default config and the chosen one again (0.1 s each): two removals beside
    ``model=cnn`` composed 6 configs, where the command without them composes 1."""
    import mnistlab.config_tree

    composed: list[list[str]] = []

    def counted(name: str, overrides: list[str], **kwargs):
        composed.append(overrides)
        return compose(name, overrides=overrides, **kwargs)

    compose = mnistlab.config_tree.compose
    monkeypatch.setattr(mnistlab.config_tree, "compose", counted)
    train = ROOT / "scripts" / "train.py"
    for chosen in ([], ["model=cnn"]):
        composed.clear()
        assert config_mistake(train, "train", [*chosen, "trainer.max_epochs=1"]) is None
        plain = len(composed)
        composed.clear()
        assert config_mistake(train, "train", [*chosen, "~scheduler", "~experiment", "trainer.max_epochs=1"]) is None
        assert len(composed) <= plain + 1, composed
    # The copy a check changes (values_mistake sets a chosen _target_) is its own: the next one is as composed.
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        tree = ConfigTree()
        tree.compose("train", []).optimizer.lr = 5.0
        assert tree.compose("train", []).optimizer.lr != 5.0


def test_a_word_for_a_yes_no_flag_is_one_of_its_modes() -> None:
    # Lightning tests trainer.deterministic for truth: 'ture' set cuDNN's half of it and left PyTorch's
    # deterministic algorithms off, without a word.
    train = ROOT / "scripts" / "train.py"
    mistake = config_mistake(train, "train", ["trainer.deterministic=ture"])
    assert mistake == "trainer.deterministic='ture' is not true, false or 'warn'"
    assert "'maybe'" in config_mistake(train, "train", ["-m", "trainer.deterministic=true,maybe"])
    for valid in ("true", "false", "warn", "null"):
        assert config_mistake(train, "train", [f"trainer.deterministic={valid}"]) is None, valid
    assert config_mistake(train, "train", ["trainer.gradient_clip_algorithm=norm"]) is None  # a plain str


def test_suggestions_within_two_edits() -> None:
    assert distance("hiden", "hidden") == 1 and distance("adma", "adam") == 1 and distance("lrr", "lr") == 1
    assert nearest("max_epoch", ["max_epochs", "max_steps"]) == "max_epochs"
    assert nearest("weight_decy", ["lr", "weight_decay"]) == "weight_decay"
    assert nearest("xyz", ["lr", "seed"]) is None  # nothing near: no guess
    assert nearest("foo", ["root"]) is None  # short words: one edit at most


def test_a_launch_folder_where_outputs_cannot_be_made_is_one_line() -> None:
    """train.py launched where ``outputs/`` cannot be made (``/proc`` here; a read-only mount alike)."""
    result = run("train.py", "trainer.max_epochs=1", Path("/proc"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: cannot make a folder in /proc: No such file or directory (where outputs/ goes): "
        "launch from a writable folder or give hydra.run.dir=..."
    )


def test_configs_of_a_searchpath_folder_are_checked_too(tmp_path: Path) -> None:
    """``hydra.searchpath=[file://DIR]`` (docs/own-network.md): its options and keys are checked like conf/'s."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("_target_: mnistlab.models.MLP\nhidden_units: 5\n")
    train, searchpath = ROOT / "scripts" / "train.py", f"hydra.searchpath=[file://{tmp_path}]"
    assert config_mistake(train, "train", [searchpath, "model=mine", "model.hidden_units=7"]) is None
    mistakes = {
        "model.hiden_units=3": "not a setting of mnistlab.models.MLP; did you mean model.hidden_units?",
        "optimizer.lrr=0.1": "did you mean optimizer.lr?",
        "model.hidden_units=abc": "model.hidden_units='abc' is not an integer",
    }
    for override, fix in mistakes.items():
        assert fix in config_mistake(train, "train", [searchpath, "model=mine", override]), override
    assert "did you mean model=mine? (cnn, hidden, linear, mine, record_cnn)" in config_mistake(
        train, "train", [searchpath, "model=mien"]
    )
    missing = config_mistake(train, "train", [f"hydra.searchpath=[file://{tmp_path}/nope]", "model=mine"])
    assert missing == f"hydra.searchpath=[file://{tmp_path}/nope]: {tmp_path}/nope is not a folder"


def test_a_sweep_job_folder_as_a_path_is_answered_with_its_quoted_form(tmp_path: Path) -> None:
    """A sweep's job folder (``0_cv=3,model=linear``) copied into ``ckpt_path=``: Hydra's grammar cannot read it
    unquoted, and the one line said only "mismatched input '='"; ``restart_hint`` printed such commands too."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnistlab.config_keys import path_override

    job = tmp_path / "0_cv=3,data.fold=0,model=linear,seed=42"
    evaluate = ROOT / "scripts" / "evaluate.py"
    line = config_mistake(evaluate, "evaluate", [f"ckpt_path={job}"])
    assert line is not None and line.endswith(f"; a path with = in it goes in quotes: 'ckpt_path=\"{job}\"'")
    [quoted] = shlex.split(line.rsplit(": ", 1)[1])  # what the shell hands the script
    assert config_mistake(evaluate, "evaluate", [quoted]) is None
    assert OverridesParser.create().parse_overrides([quoted])[0].value() == str(job)
    assert path_override("ckpt_path", tmp_path / "run") == f"ckpt_path={tmp_path}/run"  # a plain path stays plain
    listed = config_mistake(evaluate, "evaluate", [f"ckpt_path=[{job},{job}]"])
    assert listed is not None and listed.endswith('goes in quotes: \'ckpt_path=["...","..."]\'')


@pytest.mark.parametrize(
    "name", ["run#2", "données", "a;b", "~x", "a&b", "2024", "null", "0_model=linear\\", 'say "hi"', "a=\\b", "it's"]
)
def test_a_printed_path_reads_back_as_that_path(name: str, tmp_path: Path) -> None:
    """``path_override`` quoted only ``=,[]{}() '"``: ``ckpt_path=/x/run#2/...`` (so a non-ASCII letter, ``;``,
    ``~``, ``&``) did not parse, ``2024`` and ``null`` were read as a number and None, and a backslash was
    doubled inside the quotes (another path)."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mnistlab.config_keys import path_override

    path = tmp_path / name
    [argument] = shlex.split(shlex.quote(path_override("ckpt_path", path)))  # as the shell hands it over
    assert OverridesParser.create().parse_overrides([argument])[0].value() == str(path)
    assert config_mistake(ROOT / "scripts" / "evaluate.py", "evaluate", [argument]) is None
    assert path_override("ckpt_path", "2024") == 'ckpt_path="2024"'


def test_the_sweeps_continue_line_quotes_a_folder_hydra_cannot_read_bare() -> None:
    from omegaconf import OmegaConf

    from hydra_plugins.mnistlab_sweeps.interruptions import continue_hint

    hint = continue_hint(OmegaConf.create({"hydra": {"sweep": {"dir": "/tmp/lr=0.1,run#2"}}}))
    # Before: "... plus hydra.sweep.dir=/tmp/lr=0.1,run#2", which Hydra could not read back.
    assert hint.startswith("interrupted; continue with the same command plus 'hydra.sweep.dir=\"/tmp/lr=0.1,run#2\"' ")
    plain = continue_hint(OmegaConf.create({"hydra": {"sweep": {"dir": "multirun/2026-12-06/04-30-00"}}}))
    assert plain.startswith(
        "interrupted; continue with the same command plus hydra.sweep.dir=multirun/2026-12-06/04-30-00 "
    )


def test_a_list_or_a_dict_is_refused_where_lightning_takes_a_flag_or_a_word() -> None:
    # A word is not checked for a setting that takes one (Hydra reads a folder named 123 as a number), and [..]
    # and {..} passed as words: trainer.deterministic=[true], which Lightning tests for truth, ran without a word.
    train = ROOT / "scripts" / "train.py"
    refused = {
        "trainer.deterministic=[true]": "trainer.deterministic=[True] is not true, false or 'warn'",
        "trainer.deterministic={warn:1}": "trainer.deterministic={'warn': 1} is not true, false or 'warn'",
        "trainer.accelerator=[cpu]": "trainer.accelerator=['cpu'] is a list, not a string",
        "trainer.precision=[32]": "trainer.precision=[32] is a list, not an integer or a string",
        "trainer.profiler={simple:1}": "trainer.profiler={'simple': 1} is a dict, not a string",
        "trainer.enable_progress_bar=[true]": "trainer.enable_progress_bar=[True] is a list, not true or false",
    }
    for override, mistake in refused.items():
        assert config_mistake(train, "train", [override]) == mistake, override
    assert "[True]" in config_mistake(train, "train", ["-m", "trainer.deterministic=true,[true]"])
    for valid in (
        ["trainer.devices=[0]"],  # Lightning takes a list of devices
        ["trainer.strategy={_target_:lightning.pytorch.strategies.DDPStrategy}"],  # an object Hydra builds
        ["+trainer.max_time={days:1}"],
    ):
        assert config_mistake(train, "train", valid) is None, valid


def test_a_setting_annotated_with_a_bare_list_takes_one(tmp_path: Path) -> None:
    """An own network's ``widths: int | list``: the bare ``list`` was dropped from its types, so [32,64] was refused."""
    from omegaconf import OmegaConf

    from mnistlab.setting_types import expected_types, type_mistake

    (tmp_path / "widenet.py").write_text("class Net:\n    def __init__(self, widths: int | list = 64) -> None: ...\n")
    sys.path.insert(0, str(tmp_path))
    try:
        node = OmegaConf.create({"_target_": "widenet.Net", "widths": 64})
        assert expected_types(node, "widths") is None  # not checked: a list is one of its values
    finally:
        sys.path.remove(str(tmp_path))
    assert type_mistake("model.widths", [32, 64], {int}) == "model.widths=[32, 64] is a list, not an integer"


def test_an_added_lightning_setting_is_typed_as_a_changed_one() -> None:
    # +trainer.enable_checkpointing=nope (the docs' own +trainer.enable_checkpointing=false, misspelled) ran with
    # checkpoints on, without a word: a setting that conf/trainer/default.yaml lacks was not checked at all.
    train = ROOT / "scripts" / "train.py"
    refused = {
        "+trainer.enable_checkpointing=nope": "trainer.enable_checkpointing='nope' is not true or false",
        "+trainer.benchmark=[true]": "trainer.benchmark=[True] is a list, not true or false",
        "+trainer.min_epochs=x": "trainer.min_epochs='x' is not an integer",
    }
    for override, mistake in refused.items():
        assert config_mistake(train, "train", [override]) == mistake, override
    early = ["+callbacks.es._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.es.monitor=val/acc"]
    assert config_mistake(train, "train", [*early, "+callbacks.es.patience=abc"]) == (
        "callbacks.es.patience='abc' is not an integer"
    )
    for valid in (
        ["+trainer.enable_checkpointing=false"],
        ["+trainer.max_time={days:1}"],  # a dict is one of its types: not checked
        ["+optimizer.amsgrad=true"],
        [*early, "+callbacks.es.patience=3"],
        ["+callbacks.early_stopping.patience=1"],  # no class named: judged by the callbacks' own check
    ):
        assert config_mistake(train, "train", valid) is None, valid


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ("trainer.max_epochs=1 -m cv=3", "error: -m goes before the overrides (Hydra reads none after a flag that "
         "follows one): -m trainer.max_epochs=1 cv=3"),
        ("model=linear --config-name train seed=1", "error: --config-name goes before the overrides (Hydra reads "
         "none after a flag that follows one): --config-name train model=linear seed=1"),
    ],
)  # fmt: skip
def test_a_flag_between_overrides_is_one_line(args: str, line: str, tmp_path: Path) -> None:
    """Before: Hydra's usage text (four lines) and "train.py: error: unrecognized arguments: cv=3"."""
    result = run("train.py", args, tmp_path)
    assert result.returncode == 2 and (result.stdout + result.stderr).strip().splitlines() == [line], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_flags_before_or_after_every_override_pass_the_check() -> None:
    train = ROOT / "scripts" / "train.py"
    for args in (["-m", "model=linear", "seed=1"], ["model=linear", "seed=1", "-m"], ["-cn", "train", "-m", "seed=1"]):
        mistake = config_mistake(train, "train", args)
        assert mistake is None or "goes before the overrides" not in mistake, (args, mistake)


@pytest.mark.parametrize(
    ("args", "override"),
    [("--epochs 3", "trainer.max_epochs=3"), ("--lr 0.01", "optimizer.lr=0.01"),
     ("--batch-size=64", "data.batch_size=64"), ("model=linear --max-epochs 2", "trainer.max_epochs=2"),
     # Before: "see the settings with --cfg job", where Lightning 1.x's --gpus stands for two overrides
     ("--gpus 1", "trainer.accelerator=gpu trainer.devices=1"), ("--gpus 0", "trainer.accelerator=cpu"),
     ("--cpu", "trainer.accelerator=cpu"),
     # Before: "see the settings with --cfg job"; other scripts' GPU counts, and PyTorch examples' GPU index
     ("--num-gpus 2", "trainer.accelerator=gpu trainer.devices=2"), ("--ngpu=0", "trainer.accelerator=cpu"),
     ("--gpu 1", "trainer.accelerator=gpu trainer.devices=[1]"), ("--gpu -1", "trainer.accelerator=cpu"),
     ("--gpu", "trainer.accelerator=gpu")],
)  # fmt: skip
def test_an_argparse_flag_is_answered_with_its_override(args: str, override: str, tmp_path: Path) -> None:
    """Before: ``error: cannot read the override '3': LexerNoViableAltException ...`` (Hydra skipped --epochs)."""
    result = run("train.py", args, tmp_path)
    lines = (result.stdout + result.stderr).strip().splitlines()
    flag = args.split(" ", 1)[1] if args.startswith("model=") else args
    want = f"error: {flag}: the scripts take Hydra overrides (key=value), not --flags: give {override}"
    assert result.returncode == 2 and lines == [want], lines
    assert list(tmp_path.iterdir()) == []


def test_hydras_own_flags_are_no_argparse_mistake() -> None:
    train = ROOT / "scripts" / "train.py"
    assert "not --flags" in config_mistake(train, "train", ["--unknown-thing", "1"])
    assert "see the settings with --cfg job" in config_mistake(train, "train", ["--unknown-thing", "1"])
    assert config_mistake(train, "train", ["--device", "cuda"]).endswith("give trainer.accelerator=cuda")  # not devices
    assert config_mistake(train, "train", ["--gpus=0,1"]).endswith("give trainer.accelerator=gpu trainer.devices=[0,1]")
    predict = ROOT / "scripts" / "predict.py"  # its accelerator is at the top, and it has no devices
    assert config_mistake(predict, "predict", ["--gpus", "2"]).endswith("give accelerator=gpu")
    hydras = (
        ["-m", "seed=1,2"], ["--multirun", "seed=1"], ["--multi", "seed=1"], ["-cn", "train", "seed=1"],
        ["--config-name=train", "seed=1"], ["--cfg", "job"], ["-h"], ["--help"], ["--version"], ["--hydra-help"],
        ["-c", "job", "-p", "trainer"], ["--resolve", "--cfg", "job"], ["-r", "seed=1"],
    )  # fmt: skip
    for args in hydras:
        mistake = config_mistake(train, "train", args)
        assert mistake is None or "not --flags" not in mistake, (args, mistake)


def test_a_search_entry_with_a_dot_in_its_key_is_named_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``~hydra.sweeper.params.model.hidden_units`` was "not a setting of hydra.sweeper.params; did you mean
    hydra.sweeper.params.model.hidden_units.hidden_units?": Hydra splits the key, so nothing removes that entry."""
    monkeypatch.chdir(tmp_path)
    train = ROOT / "scripts" / "train.py"
    search = ["-m", "hparams_search=optuna", "model=cnn"]
    removed = config_mistake(train, "train", [*search, "~hydra.sweeper.params.model.hidden_units"])
    assert removed.startswith("~hydra.sweeper.params.model.hidden_units: model.hidden_units is one key of ")
    assert "no override removes it" in removed and "did you mean" not in removed
    changed = config_mistake(train, "train", [*search, "hydra.sweeper.params.model.hidden_units.low=64"])
    assert changed.endswith("'++hydra.sweeper.params={model.hidden_units:{low:64}}'")
    # The mapping it names is one Hydra takes (and merges into the entry).
    assert config_mistake(train, "train", [*search[:2], "++hydra.sweeper.params={model.hidden_units:{low:64}}"]) is None


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("data.root=~/mnist", "{home}/mnist"),
        ("system.teacher=~", "{home}"),
        ("ckpt_path=/tmp/a~b", "/tmp/a~b"),
        ("hydra.searchpath=[file://~/myconf]", ["file://{home}/myconf"]),  # docs/own-network.md's, with ~
        ("ckpt_path=[/a,~/b]", ["/a", "{home}/b"]),
    ],
)
def test_a_tilde_hydra_cannot_read_is_answered_with_the_path(
    override: str, path: str | list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``cannot read the override 'data.root=~/mnist': LexerNoViableAltException: data.root=~/mnist (key=value,
    see hydra.cc's override grammar)``: the shell expands ~ only at a word's start or after a plain name's =."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    mistake = config_mistake(ROOT / "scripts" / "train.py", "train", [override])
    assert mistake.startswith(f"{override}: ") and "LexerNoViableAltException" not in mistake, mistake
    (given,) = shlex.split(mistake.rsplit(": give ", 1)[1])  # what the shell hands the script
    parsed = OverridesParser.create().parse_override(given)
    home = tmp_path / "me"
    want = [p.format(home=home) for p in path] if isinstance(path, list) else path.format(home=home)
    assert (parsed.key_or_group, parsed.value()) == (override.split("=")[0], want)


@pytest.mark.parametrize("override", ["data.augment=affine", "+data.augment=affine", "data.augment=afine"])
def test_a_group_spelled_with_dots_is_answered_with_its_slash(override: str) -> None:
    """Before: ``data.augment is not in the config of mnistlab.data.MNISTDataModule; add it with +data.augment=affine``,
    and that override ended in ``TypeError: 'str' object is not callable`` (a traceback, exit 1) inside the run."""
    mistake = config_mistake(ROOT / "scripts" / "train.py", "train", [override])
    assert mistake == (
        "data.augment is the group data/augment, chosen with a /; did you mean data/augment=affine? "
        "(affine, best_fashion_mnist, best_mnist)"
    )
    assert config_mistake(ROOT / "scripts" / "train.py", "train", ["data/augment=affine"]) is None  # the fix


def test_a_searchpath_of_one_folder_without_brackets_is_answered_with_the_list(tmp_path: Path) -> None:
    """Before: ``hydra.searchpath must be a list of strings. Got: file:///...`` and Hydra's HYDRA_FULL_ERROR line,
    exit 1 (docs/own-network.md gives it in brackets, which a newcomer drops for a single folder)."""
    import shlex

    train = ROOT / "scripts" / "train.py"
    (tmp_path / "model").mkdir()
    mistake = config_mistake(train, "train", [f"hydra.searchpath=file://{tmp_path}", "model=linear"])
    fix = shlex.quote(f"hydra.searchpath=[file://{tmp_path}]")
    given = f"hydra.searchpath=file://{tmp_path}"
    assert mistake == f"{given}: hydra.searchpath takes a list of folders, even of one: give {fix}"
    assert config_mistake(train, "train", [*shlex.split(fix), "model=linear"]) is None  # the fix is taken


@pytest.mark.parametrize(
    ("args", "given", "fix"),
    [
        ("optimizer.lr = 0.1", "optimizer.lr = 0.1: the shell passed this override as 3 words", "optimizer.lr=0.1"),
        ("optimizer.lr =0.1", "optimizer.lr =0.1: the shell passed this override as 2 words", "optimizer.lr=0.1"),
        # Hydra read optimizer.lr= as an empty value, then could not read 0.1
        ("optimizer.lr= 0.1", "optimizer.lr= 0.1: the shell passed this override as 2 words", "optimizer.lr=0.1"),
        ("model=cnn model.channels=[8, 16]", "model.channels=[8, 16]: ", "'model.channels=[8,16]'"),
        ("-m seed=1, 2, 3 model=linear", "seed=1, 2, 3: the shell passed this override as 3 words", "seed=1,2,3"),
    ],
)
def test_an_override_split_into_words_is_answered_with_it_whole(args: str, given: str, fix: str) -> None:
    """Before: ``cannot read the override 'model.channels=[8,': no viable alternative at input '[8,' (key=value, see
    hydra.cc's override grammar)``; for ``optimizer.lr = 0.1``: ``... 'optimizer.lr': Error parsing override``."""
    import shlex

    train = ROOT / "scripts" / "train.py"
    mistake = config_mistake(train, "train", args.split())
    assert mistake.startswith(given) and mistake.endswith(f"Hydra reads each word as an override: give {fix}"), mistake
    whole = [a for a in args.split() if a.startswith(("-m", "model="))][:1] + shlex.split(fix)
    assert config_mistake(train, "train", whole) is None  # the fix is taken
    assert config_mistake(train, "train", ["~scheduler", "seed=1"]) is None  # a removal is one word
    assert "seed=1,~scheduler" not in config_mistake(train, "train", ["-m", "seed=1,", "~scheduler"])  # nor a value


def test_a_value_for_a_group_of_settings_is_answered_with_its_settings() -> None:
    """Before: ``Cannot instantiate config of type float. Top level config must be an OmegaConf DictConfig/ListConfig
    object, ...`` and Hydra's HYDRA_FULL_ERROR line, exit 1, once the job had started."""
    train = ROOT / "scripts" / "train.py"
    assert config_mistake(train, "train", ["callbacks.time_to_target=0.9"]) == (
        "callbacks.time_to_target is a group of settings (target, monitor), not one value: "
        "give callbacks.time_to_target.<setting>=0.9, or callbacks.time_to_target=null to drop it"
    )
    assert config_mistake(train, "train", ["model.hidden_units=5", "model=linear", "data=mnist"]) is None
    assert config_mistake(train, "train", ["optimizer=sgd", "system=classifier"]) is None
    assert config_mistake(train, "train", ["callbacks.time_to_target.target=0.9"]) is None
    assert config_mistake(train, "train", ["callbacks.time_to_target=null"]) is None  # no callback: as before


@pytest.mark.parametrize(
    "args",
    [
        ["~callbacks.time_to_target", "callbacks.time_to_target.target=0.9"],
        ["callbacks.time_to_target.target=0.9", "~callbacks.time_to_target"],  # before: the value dropped silently
        ["-m", "~callbacks.time_to_target", "callbacks.time_to_target.target=0.9,0.95"],
    ],
)
def test_a_setting_of_what_the_command_removes_is_one_line(args: list[str]) -> None:
    """Before, after the removal: Hydra's ``Key 'time_to_target' is not in struct`` with its full_key and object_type
    lines and HYDRA_FULL_ERROR's, exit 1; before the removal: the run went on without the callback, without a word."""
    train = ROOT / "scripts" / "train.py"
    setting = next(a for a in args if a.startswith("callbacks.time_to_target.target="))
    assert config_mistake(train, "train", args) == (
        f"{setting} sets a setting of callbacks.time_to_target, which ~callbacks.time_to_target removes: the two "
        "contradict each other; drop ~callbacks.time_to_target to keep callbacks.time_to_target with that setting, "
        f"or {setting} to run without it"
    )
    assert config_mistake(train, "train", ["~trainer.max_epochs", "trainer.max_epochs=2"]) == (
        "trainer.max_epochs=2 sets trainer.max_epochs, which ~trainer.max_epochs removes: the two contradict each "
        "other; drop ~trainer.max_epochs to keep trainer.max_epochs with that value, or trainer.max_epochs=2 to run "
        "without it"
    )
    for fixed in (["~callbacks.time_to_target"], [a for a in args if not a.startswith("~")]):
        assert config_mistake(train, "train", fixed) is None  # either fix is taken


@pytest.mark.parametrize(
    "args",
    [
        ["~callbacks.time_to_target", "+callbacks.time_to_target.target=0.9"],
        ["+callbacks.time_to_target.target=0.9", "~callbacks.time_to_target"],
    ],
)
def test_an_added_setting_of_what_the_command_removes_is_the_contradiction(args: list[str]) -> None:
    """Before: ``+callbacks.time_to_target.target: callbacks.time_to_target.target is set already; give it without
    the +``, whose fix was refused next as the contradiction; now the contradiction first, with a fix that runs."""
    train = ROOT / "scripts" / "train.py"
    assert config_mistake(train, "train", args) == (
        "+callbacks.time_to_target.target=0.9 sets a setting of callbacks.time_to_target, which "
        "~callbacks.time_to_target removes: the two contradict each other; drop ~callbacks.time_to_target and give "
        "callbacks.time_to_target.target=0.9 to keep callbacks.time_to_target with that setting, or "
        "+callbacks.time_to_target.target=0.9 to run without it"
    )
    assert config_mistake(train, "train", ["callbacks.time_to_target.target=0.9"]) is None  # the first fix is taken
    assert config_mistake(train, "train", ["~callbacks.time_to_target"]) is None  # and the second
    rebuilt = ["_target_=mnistlab.callbacks.TimeToTarget", "target=0.9"]  # a new node, with its class: an addition
    assert (
        config_mistake(
            train, "train", ["~callbacks.time_to_target", *(f"+callbacks.time_to_target.{r}" for r in rebuilt)]
        )
        is None
    )


def test_an_added_key_that_the_removed_node_lacks_keeps_its_plus_in_the_fix() -> None:
    # The fix of the contradiction said "give callbacks.time_to_target.extra=1", without the + that a key the node
    # lacks needs (Hydra then refused it: not in struct).
    train = ROOT / "scripts" / "train.py"
    mistake = config_mistake(train, "train", ["~callbacks.time_to_target", "+callbacks.time_to_target.extra=1"])
    assert mistake is not None and "drop ~callbacks.time_to_target to keep callbacks.time_to_target" in mistake
    assert "give callbacks.time_to_target.extra=1" not in mistake
