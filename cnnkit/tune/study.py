"""The Optuna study behind ``cnnkit tune``: stored in SQLite in the study folder, so it survives a kill.

One process at a time holds the folder (the run folder's ``.lock``), so a trial still marked running
when a study is opened belongs to a process that died: it is marked failed and its parameters are
queued to run again. Finished trials are never repeated.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import optuna

from cnnkit.errors import CnnkitError
from cnnkit.tune.space import SearchSpace

STUDY_FILE = "study.db"
STUDY_NAME = "cnnkit"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def open_study(study_dir: Path, sampler: str, space: SearchSpace, identity: dict[str, Any], seed: int) -> optuna.Study:
    """Create the study in ``study_dir`` or continue it; ``identity`` (base options, space) must match."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(study_dir / STUDY_FILE).resolve()}")
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )  # fmt: skip
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        changed = sorted(key for key in {**stored, **identity} if stored.get(key) != identity.get(key))
        raise CnnkitError(
            f"--study {study_dir} searched with other settings ({', '.join(changed)}); use a new --study folder"
        )
    requeue_killed_trials(study)
    # A continued study must not draw its first process's values again: seed by the trials it holds.
    study.sampler = make_sampler(sampler, space, seed + len(study.get_trials(deepcopy=False)))
    return study


def make_sampler(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (the default), random search, or a grid of every choice and three points per range."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.GridSampler({p.name: p.grid_values() for p in space.params}, seed=seed)


def requeue_killed_trials(study: optuna.Study) -> list[int]:
    """Mark trials a dead process left running as failed, and queue their parameters again."""
    killed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in killed:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return [trial.number for trial in killed]


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


class ReportToTrial(L.Callback):
    """Report each epoch's validation accuracy to the trial and stop the run when the pruner says so.

    One instance serves every stage of a run, so its step counts epochs across stages.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.step = trial, 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_accuracy" not in trainer.callback_metrics:
            return
        self.step += 1
        self.trial.report(float(trainer.callback_metrics["val_accuracy"]), self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {self.step}")
