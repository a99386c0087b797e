"""Running a study: one training run per trial, a progress bar over the trials, the files at the end."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cnnkit.config import TrainConfig
from cnnkit.data import load_dataset
from cnnkit.data.folders import DatasetSplits
from cnnkit.errors import CnnkitError
from cnnkit.run import CONFIG, METRICS, load_run
from cnnkit.train import train
from cnnkit.tune.report import format_params, trial_rows, write_report
from cnnkit.tune.space import SearchSpace
from cnnkit.tune.study import FINISHED, ReportToTrial, finished_trials, open_study
from cnnkit.tune.trials import TRIALS_DIR, TuneResult, best_config, keep_only, trial_config, trial_dir, write_best

EVALUATED_RUN = "best-run"


def run_study(
    base: TrainConfig, space: SearchSpace, study_dir: Path, trials: int, timeout: float | None, sampler: str,
    evaluate_best: bool, progress: bool,
) -> TuneResult:  # fmt: skip
    """Open or continue the study in ``study_dir``, run the trials still missing, write the results."""
    dataset = validation_only(base)
    identity = {"base": {k: v for k, v in base.to_dict().items() if k != "out"}, "space": space.to_dict()}
    study = open_study(study_dir, sampler, space, {**identity, "sampler": sampler}, base.seed)
    remaining = trials - len(finished_trials(study))
    with TrialProgress(trials, len(finished_trials(study)), enabled=progress) as bar:
        if remaining > 0:
            study.optimize(
                lambda trial: run_trial(trial, dataset, base, space, study_dir), n_trials=remaining, timeout=timeout,
                catch=(CnnkitError,), callbacks=[bar.trial_ended, lambda study, _: _keep_best_folder(study, study_dir)],
            )  # fmt: skip
    best = _best(study)
    config_path = None if best is None else write_best(study_dir, best_config(base, space, best.params))
    files = write_report(study, study_dir, space)
    evaluated = None
    if evaluate_best and config_path is not None:
        evaluated = evaluate_config(config_path, study_dir / EVALUATED_RUN, progress)
    summary = None if best is None else {"number": best.number, "val_accuracy": best.value, **best.user_attrs,
                                         "params": best.params}  # fmt: skip
    return TuneResult(study_dir, trial_rows(study), summary, config_path, files, evaluated)


def validation_only(base: TrainConfig) -> DatasetSplits:
    """The dataset without its test split: trials are chosen on validation accuracy alone."""
    dataset = load_dataset(
        base.data, base.val_split, base.test_split, base.seed, max_pixels=base.max_pixels,
        drop_empty_classes=base.drop_empty_classes, without_test=True,
    )  # fmt: skip
    return replace(dataset, test=None)  # built-in datasets ignore the scan options


def run_trial(trial: optuna.Trial, dataset: DatasetSplits, base: TrainConfig, space: SearchSpace, study: Path) -> float:
    """Train one trial's configuration; its value is the run's best validation accuracy."""
    params = {param.name: param.suggest(trial) for param in space.params}
    out = trial_dir(study, trial.number)
    shutil.rmtree(out, ignore_errors=True)  # left by a process killed in this very trial
    trial.set_user_attr("run", str(out))
    started = time.perf_counter()
    try:
        run = train(dataset, trial_config(base, space, params, out), progress=False, callbacks=[ReportToTrial(trial)])
    finally:
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
    metrics = run.metrics
    for key in ("val_loss", "best_epoch", "best_stage"):
        trial.set_user_attr(key, metrics[key])
    return float(metrics["val_accuracy"])


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.user_attrs.get("val_loss", 0.0)), default=None)


def _keep_best_folder(study: optuna.Study, study_dir: Path) -> None:
    best = _best(study)
    keep_only(study_dir / TRIALS_DIR, set() if best is None else {best.number})


def evaluate_config(config_path: Path, out: Path, progress: bool) -> dict[str, Any]:
    """Train the best configuration on the whole dataset, test split included, and report its test accuracy.

    A run already there from the same configuration is reported again rather than trained twice.
    """
    config = TrainConfig.from_file(config_path)
    done = (out / METRICS).is_file() and (out / CONFIG).is_file()
    if done and replace(TrainConfig.from_file(out / CONFIG), out=None) == replace(config, out=None):
        run = load_run(out)
        return _evaluated(run.path, run.metrics)
    shutil.rmtree(out, ignore_errors=True)
    run = train(config=config, out=str(out), progress=progress)
    return _evaluated(run.path, run.metrics)


def _evaluated(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("val_accuracy", "test_accuracy", "num_test", "total_seconds")
    return {"run": str(path), **{key: metrics.get(key) for key in keys}}


class TrialProgress:
    """A bar over the study's trials with the best accuracy so far, and one line per finished trial."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("tune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
        )  # fmt: skip
        self.task = self.progress.add_task("", total=total, completed=done)

    def __enter__(self) -> TrialProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def trial_ended(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in FINISHED:
            self.progress.advance(self.task)
        best = _best(study)
        self.progress.update(self.task, description="" if best is None else f"best {best.value:.2%}")
        if self.enabled:
            seconds = trial.user_attrs.get("seconds", 0.0)
            outcome = f"{trial.value:.2%} validation" if trial.value is not None else trial.state.name.lower()
            line = f"trial {trial.number}: {outcome} in {seconds:.1f} s: {format_params(trial.params)}"
            self.progress.console.print(line)
