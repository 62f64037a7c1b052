"""What a checkpoint can continue: its finished epochs, and whether this run's system can take it up."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.errors import MnistlabError

if TYPE_CHECKING:
    from mnistlab.systems import Classifier

log = logging.getLogger(__name__)


def finished_epochs(ckpt: dict[str, Any]) -> int:
    """The number of epochs a checkpoint has trained through (its loop state, else its epoch-end ``epoch``).

    An epoch-end checkpoint is saved while the epoch's training is ``processed`` but before Lightning
    counts it ``completed``; a mid-epoch one has the running epoch started, not processed.
    """
    from mnistlab.lightning_private import checkpoint_epochs_processed  # imports Lightning: only when asked

    processed = checkpoint_epochs_processed(ckpt)
    return processed if processed is not None else int(ckpt.get("epoch", -1)) + 1


def continue_from(ckpt_path: str | Path, max_epochs: int | None) -> Path:
    """The checkpoint that ``scripts/train.py ckpt_path=...`` continues: a file, or a run folder's last.ckpt.

    ``trainer.max_epochs`` keeps Lightning's meaning, the total number of epochs, also when a run
    continues from a checkpoint: one that has finished them is refused before any work (Lightning
    would fail later with a traceback or, at equality, train nothing).
    """
    from mnistlab.checkpoint_paths import find_checkpoint
    from mnistlab.checkpoints import read_checkpoint

    path = find_checkpoint(ckpt_path, prefer=("last.ckpt",))
    if max_epochs is not None and max_epochs >= 0 and (done := finished_epochs(read_checkpoint(path))) >= max_epochs:
        raise MnistlabError(
            f"the checkpoint has finished {done} epochs; set trainer.max_epochs above {done} to continue"
        )
    return path


def check_continuable(system: Classifier, ckpt_path: str | Path) -> None:
    """Refuses, before any work, a checkpoint that this run's system cannot continue.

    Lightning restores the checkpoint's weights into this run's network, its optimizer state into this
    run's optimizer and its schedule's state into this run's schedule: another network fails inside the
    fit (missing keys, other shapes), another optimizer at the first step (Adam's state has no SGD
    ``momentum_buffer``), each with a traceback; other optimizer settings (``lr``) are silently replaced
    by the saved ones; a schedule keeps its saved length and fails past it, and its last learning rate
    stays with the optimizer even when this run has no schedule.
    """
    import torch

    from mnistlab.checkpoints import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    saved = {k: tuple(v.shape) for k, v in ckpt.get("state_dict", {}).items() if isinstance(v, torch.Tensor)}
    ours = {k: tuple(v.shape) for k, v in system.state_dict().items()}
    if saved != ours:
        differs = sorted(set(saved) ^ set(ours)) or [k for k in ours if saved[k] != ours[k]]
        raise MnistlabError(
            f"ckpt_path={ckpt_path} holds another network than this run's model (first difference: {differs[0]}); "
            "give the model it was trained with (its run's .hydra/config.yaml)"
        )
    saved_hparams = ckpt.get("hyper_parameters") or {}
    trained_on = (ckpt.get("datamodule_hyper_parameters") or {}).get("dataset") or "mnist"
    if saved_hparams.get("class_names") and list(saved_hparams["class_names"]) != list(system.class_names):
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained on {trained_on} ({', '.join(saved_hparams['class_names'][:3])}, ...), "
            f"not on this run's data ({', '.join(system.class_names[:3])}, ...); give data={trained_on}"
        )
    before, now = saved_hparams.get("optimizer") or {}, system.hparams.get("optimizer") or {}
    if before and now and before.get("target") != now.get("target"):
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained with {before['target']}, whose state this run's {now['target']} "
            "cannot take up; give the optimizer it was trained with"
        )
    if before and now and (changed := sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))):
        settings = " ".join(f"optimizer.{k}={before.get(k)}" for k in changed)
        raise MnistlabError(
            f"ckpt_path={ckpt_path} restores its optimizer's state, settings included ({settings}): "
            "this run's other settings would not take effect; give those"
        )
    # A restored optimizer holds the learning rate where its schedule left it, and a new schedule cannot
    # start on restored state (OneCycleLR's KeyError 'initial_lr' at the first step).
    if ckpt.get("lr_schedulers"):
        lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained under a learning-rate schedule: its optimizer restores the "
            f"schedule's last learning rate ({lr:.3g}) and the schedule is sized for its own run; continue that "
            "run with resume=RUN_DIR"
        )
    if system.scheduler_factory is not None:
        raise MnistlabError(
            f"ckpt_path={ckpt_path} was trained without a learning-rate schedule, and a schedule cannot start "
            "on its restored optimizer; continue it without scheduler"
        )
    taught = [m["path"] for m in (ckpt.get("teacher") or {}).get("members") or []]
    if taught and system.training_loss.teacher is None:  # a fine-tuning on the labels alone may be meant: said
        given = taught[0] if len(taught) == 1 else f"[{','.join(taught)}]"
        log.warning(
            "ckpt_path=%s was distilled from a teacher; this run trains on from its weights on the labels alone "
            "(system.teacher=%s distils on)",
            ckpt_path,
            given,
        )


def restart_hint(run_dir: Path, best: Path, max_epochs: Any) -> str:
    """What to do with a run whose ``last.ckpt`` is lost: a command that works on its ``best.ckpt``, or "".

    A new run from the best weights needs the run's own overrides (``model=linear`` and the like, from its
    ``.hydra/overrides.yaml``, and its ``hydra.searchpath`` for a network of the user's own), or
    ``check_continuable`` refuses it as another network or optimizer. Weights whose epochs are all
    done, or that a schedule sized for the whole run trained, cannot continue: they can only be tested.

    Args:
        run_dir: The run's folder.
        best: Its ``checkpoints/best.ckpt``.
        max_epochs: The run's ``trainer.max_epochs``.
    """
    import shlex

    from omegaconf import OmegaConf

    from mnistlab.checkpoints import read_checkpoint
    from mnistlab.config_keys import path_override, shell_path_override

    try:
        ckpt = read_checkpoint(best)
        recorded = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.overrides
    except (MnistlabError, OSError, ValueError, AttributeError):  # no best.ckpt, or no record to rebuild its command
        return ""
    test = f"python scripts/evaluate.py {shell_path_override('ckpt_path', best)}"
    if ckpt.get("lr_schedulers"):
        return f"; its best weights cannot continue under the run's learning-rate schedule: test them with {test}"
    if isinstance(max_epochs, int) and max_epochs >= 0 and finished_epochs(ckpt) >= max_epochs:
        return f"; its training had finished: test its best weights with {test}"
    # Its place (hydra.run.dir: the run's own folder) and its former start (ckpt_path=) are this command's.
    kept = [o for o in recorded.hydra if o.startswith("hydra.searchpath=")]
    # A fold of a cv sweep runs alone as data.folds=K data.val_size=0 (its data.fold and seed are recorded);
    # an Optuna trial's sampled values are recorded, its search is the sweep's.
    for o in recorded.task:
        if o.lstrip("+~").startswith("cv="):
            kept += [f"data.folds={o.split('=', 1)[1]}", "data.val_size=0"]
        elif not o.lstrip("+~").startswith(("ckpt_path=", "resume=", "hparams_search=")):
            kept.append(o)
    command = " ".join(shlex.quote(o) for o in [*kept, path_override("ckpt_path", best)])
    return f"; start a new run from its best weights: python scripts/train.py {command}"
