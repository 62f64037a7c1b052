"""Exiting without the final garbage collection keeps what exit promises: handlers, buffers, status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = """
import atexit, gc, sys
from pathlib import Path
import lightning  # the objects whose final collection is skipped
from mnistlab.process.startup import skip_final_collection

skip_final_collection()
out = Path(sys.argv[1])
atexit.register(lambda: (out / "handler").write_text(str(gc.isenabled())))  # a logger's last flush, say
log = open(out / "buffered", "w")  # never closed nor flushed by the program
log.write("last line\\n")
print("stdout line", end="")  # no newline: only the exit flushes it
sys.exit(3)
"""


def test_exit_handlers_buffers_and_status_survive(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "stdout line"
    assert (tmp_path / "handler").read_text() == "True"  # ran before the freeze, collector still on
    assert (tmp_path / "buffered").read_text() == "last line\n"
    assert "Exception ignored" not in proc.stderr


def test_a_sigterm_during_a_ctrl_c_shutdown_prints_the_continue_hint_once(monkeypatch) -> None:
    import pytest
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mnistlab.process import hint_on_interrupt

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    hints: list[str] = []
    with pytest.raises(SystemExit) as ended, hint_on_interrupt(lambda: hints.append("hint") or "hint"):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SIGTERMException(0) from None  # from None keeps __context__: the Ctrl-C it interrupted
    assert ended.value.code == 143 and hints == ["hint"]


CTRL_C = """
import os, signal, sys, time
from mnistlab import process

process.setup()  # what every entry script runs first
if sys.argv[1] == "job":
    process.configure_job()  # the job starts: Ctrl-C is Lightning's and the scripts' again
if sys.argv[1] == "sweep":  # a sweep's process under joblib, whose jobs run in workers: the sweeper's hint
    with process.hint_on_interrupt(lambda: "interrupted; continue with the same command"):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
except KeyboardInterrupt:
    print("KeyboardInterrupt reached the job")
"""


def test_ctrl_c_while_starting_is_one_line_and_the_jobs_own_after() -> None:
    starting = subprocess.run([sys.executable, "-c", CTRL_C, "start"], capture_output=True, text=True, timeout=120)
    assert starting.returncode == 130
    assert starting.stderr.strip() == "interrupted while starting: nothing was run"  # no traceback
    job = subprocess.run([sys.executable, "-c", CTRL_C, "job"], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    assert job.stdout.strip() == "KeyboardInterrupt reached the job"
    sweep = subprocess.run([sys.executable, "-c", CTRL_C, "sweep"], capture_output=True, text=True, timeout=120)
    assert sweep.returncode == 130
    assert sweep.stderr.strip() == "interrupted; continue with the same command"


JOB_START = """
import os, signal, sys
import hydra
from mnistlab import process
from mnistlab.process import startup

# A Ctrl-C while the job's console is set up, which imports lightning (seconds on a busy machine).
startup.keep_freed_memory = lambda: os.kill(os.getpid(), signal.SIGINT)

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg) -> None:
    process.configure_job()
    print("the job ran")

process.setup()
main()
"""


def test_ctrl_c_while_the_job_sets_up_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    """Before, ``configure_job`` handed Ctrl-C back before its imports: a traceback, and a folder of records alone."""
    run = tmp_path / "outputs" / "run"
    proc = subprocess.run(
        [sys.executable, "-c", JOB_START, f"hydra.run.dir={run}", "hydra.job.name=train"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "interrupted while starting: nothing was run"  # no traceback
    assert "the job ran" not in proc.stdout
    assert not (tmp_path / "outputs").exists()  # Hydra's records alone: removed, with the emptied parent


def test_a_sigterm_mid_accumulation_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    """A SIGTERM between optimizer steps of ``accumulate_grad_batches``: saved, and the resume is exact.

    Before, the gradients summed so far were not in the checkpoint: the resumed run took that step on the
    remaining batches alone (and warned), ending with other weights.
    """
    import os
    import signal

    import lightning.pytorch as pl
    import pytest
    import torch
    from conftest import write_idx_set
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mnistlab.callbacks import LastCheckpoint
    from mnistlab.callbacks.checkpoints import GRADIENTS_KEY
    from mnistlab.data import MNISTDataModule
    from mnistlab.engine import choose_engine
    from mnistlab.models import MLP
    from mnistlab.systems import Classifier

    class TermAtBatch(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
            if args[-1] == 5:  # the 6th batch: optimizer step 1 took batches 1-4, step 2 has 2 of its 4
                os.kill(os.getpid(), signal.SIGTERM)

    data = write_idx_set(tmp_path / "tiny")  # 60 images: 15 batches of 4, optimizer steps after 4, 8, 12 and 15

    def fit(folder: str, callbacks: list[pl.Callback], ckpt_path: str | None = None) -> Classifier:
        pl.seed_everything(0)
        trainer = pl.Trainer(
            max_epochs=2, accumulate_grad_batches=4, callbacks=[*callbacks, LastCheckpoint(str(tmp_path / folder))],
            logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        engine = choose_engine(trainer)
        dm = MNISTDataModule(str(data), download=False, verify=False, val_size=0, batch_size=4, engine=engine)
        system = Classifier(MLP(hidden_units=8), engine=engine)
        trainer.fit(system, datamodule=dm, ckpt_path=ckpt_path)
        return system

    whole = fit("whole", [])
    with pytest.raises(SIGTERMException):
        fit("cut", [TermAtBatch()])
    last = tmp_path / "cut" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 1  # saved: no lost work
    assert GRADIENTS_KEY in saved  # batches 5 and 6's gradients, summed
    resumed = fit("cut", [], ckpt_path=str(last))
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


INTERRUPT_AFTER_REPORT = """
import importlib.abc, importlib.machinery, os, signal, sys


class PatchReport(importlib.abc.MetaPathFinder):  # Ctrl-C right after the test report's files are written
    def find_spec(self, name, path=None, target=None):
        if name != "mnistlab.evaluation.callbacks":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            end = module.TestReport.on_test_end

            def on_test_end(self, *args):
                end(self, *args)
                os.kill(os.getpid(), signal.SIGINT)

            module.TestReport.on_test_end = on_test_end

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, PatchReport())
"""


def test_an_interrupted_evaluation_leaves_no_half_report(tmp_path: Path) -> None:
    # Ctrl-C after TestReport wrote confusion_matrix.png and the CSVs but before metrics.json left a folder
    # that reads as evaluate.py's report, without its numbers. The evaluation is redone in seconds.
    import os

    from conftest import DATA_DIR, ROOT, write_idx_set

    data, run = write_idx_set(tmp_path / "tiny"), tmp_path / "run"
    tiny = [f"data.root={data}", "data.download=false", "data.verify=false", "data.val_size=10"]
    train = [sys.executable, str(ROOT / "scripts" / "train.py"), *tiny, "trainer.max_epochs=1", f"hydra.run.dir={run}"]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(DATA_DIR)}
    assert subprocess.run(train, capture_output=True, text=True, timeout=300, env=env).returncode == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT_AFTER_REPORT)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"ckpt_path={run}", f"data.root={data}"]
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "interrupted" in proc.stderr, proc.stderr[-2000:]
    assert not (run / "eval").exists(), sorted(str(p.relative_to(run)) for p in (run / "eval").rglob("*"))


# On PYTHONPATH as sitecustomize, which Python imports before the script: a Ctrl-C as the script's imports reach
# MODULE (Hydra: the first of its heavy imports), at the same moment of every run.
CTRL_C_AT_IMPORT = """
import os, signal, sys

class CtrlCAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCAtImport())
"""


def interrupted_at_import(script: str, module: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs ``script`` with a Ctrl-C sent as its imports first reach ``module``."""
    from conftest import ROOT

    (tmp_path / "sitecustomize.py").write_text(CTRL_C_AT_IMPORT.replace("MODULE", repr(module)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "predict.py", "export.py", "serve.py"])
def test_ctrl_c_during_a_scripts_imports_is_one_line(script: str, tmp_path: Path) -> None:
    """Before, a Ctrl-C in a script's first second (its imports, before ``process.setup``) printed a traceback
    through importlib and the process died of SIGINT; ``process.interrupts_while_starting`` comes first now."""
    proc = interrupted_at_import(script, "hydra", tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip() == "interrupted while starting: nothing was run"  # no traceback
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module", ["logging", "re"])
def test_the_first_statement_sets_the_handler_before_any_heavy_import(module: str, tmp_path: Path) -> None:
    """Before, the scripts' first statement loaded all of ``mnistlab.process`` (logging, re, ctypes, threading:
    some 30 ms, most of a script's first 50) before it set the handler: a Ctrl-C there printed a traceback.
    It loads ``process/starting.py`` alone now, which imports ``signal`` and ``sys``."""
    proc = interrupted_at_import("train.py", module, tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip() == "interrupted while starting: nothing was run"  # no traceback
