"""Every feature of an optional extra, run without it: one ``error:`` line naming the install command.

The extra is made unimportable in the child process by a ``sitecustomize`` on its path that refuses
the extra's modules (as an interpreter without them would), so the rest of the install stays as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, ROOT

BLOCKER = """
import os, sys
BLOCKED = os.environ["BLOCKED_MODULES"].split(",")
class Hide:  # every finder sees the blocked modules as absent, as on a machine without them
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
"""
# (feature, blocked modules, script and arguments, the line)
CASES = [
    ("optuna", "optuna", "train.py -m hparams_search=optuna",
     'error: hparams_search=optuna needs Optuna, which is not installed: pip install -e ".[sweep]"'),
    ("joblib", "hydra_plugins.hydra_joblib_launcher", "train.py -m hydra/launcher=joblib seed=1,2",
     'error: hydra/launcher=joblib needs hydra-joblib-launcher, which is not installed: pip install -e ".[sweep]"'),
    ("submitit", "submitit", "train.py -m hydra/launcher=submitit_local seed=1,2",
     'error: hydra/launcher=submitit_local needs submitit, which is not installed: pip install -e ".[sweep]"'),
    ("mlflow", "mlflow", "train.py logger=mlflow",
     'error: logger=mlflow needs MLflow, which is not installed: pip install -e ".[mlflow]"'),
    ("onnx", "onnx", "export.py ckpt_path={ckpt} format=onnx",
     'error: format=onnx needs onnx, which is not installed: pip install -e ".[export]"'),
    ("onnxruntime", "onnxruntime", "predict.py ckpt_path={onnx} index=0",
     'error: an ONNX file needs onnxruntime, which is not installed: pip install -e ".[export]"'),
    ("serve", "litserve", "serve.py ckpt_path={ckpt}",
     'error: serving needs litserve, which is not installed: pip install -e ".[serve]"'),
]  # fmt: skip


@pytest.mark.parametrize(("feature", "blocked", "command", "line"), CASES, ids=[c[0] for c in CASES])
def test_missing_extra_names_its_install_line(
    tmp_path: Path, feature: str, blocked: str, command: str, line: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "model.ckpt").write_bytes(b"")  # the extra is checked before any checkpoint is read
    (tmp_path / "model.onnx").write_bytes(b"")
    env = {
        **os.environ,
        "BLOCKED_MODULES": blocked,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "MNISTLAB_DATA_DIR": str(DATA_DIR),
    }
    script, *args = command.format(ckpt=tmp_path / "model.ckpt", onnx=tmp_path / "model.onnx").split()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and output == [line], result.stdout + result.stderr
