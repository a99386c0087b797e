"""``cnnkit.tune``: search training options on the validation split, never the test split.

Each trial is an ordinary training run (a :class:`~cnnkit.config.TrainConfig` with some options
drawn from the :class:`~cnnkit.tune.space.SearchSpace`) on the dataset with its test split removed,
so no trial can read a test image. Trials share cnnkit's on-disk caches: decoded images (the trials'
image cache defaults to ``disk``) and the frozen layers' features, so trials that change only what
trains on top of the cache take seconds. Only the best trial's run folder is kept.

The study folder holds ``study.db`` (every trial, so a killed search continues), ``best.yaml`` (the
best configuration, for ``cnnkit train --config``), ``trials.csv``, the plots and ``study.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.config import TrainConfig
from cnnkit.errors import CnnkitError
from cnnkit.run import default_run_name, lock_for_resume, release_run_dir
from cnnkit.tune.space import SearchSpace, default_space, load_space
from cnnkit.tune.trials import TuneResult

METHODS = ("tpe", "random", "grid")


def tune(
    data: str | Path | None = None,
    config: TrainConfig | str | Path | None = None,
    *,
    trials: int = 30,
    timeout: float | None = None,
    space: str | Path | SearchSpace | None = None,
    study: str | Path | None = None,
    method: str = "tpe",
    evaluate_best: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> TuneResult:
    """Search the options in ``space`` for the best validation accuracy on ``data``.

    ``config`` and ``overrides`` are the base training options every trial starts from (as in
    :func:`cnnkit.train`). ``trials`` counts finished trials over the whole study, so a continued
    study runs only the rest; ``timeout`` (seconds) stops starting new ones. ``study`` is the folder
    (default ``studies/<data>-<model>``). ``method`` draws the trials: ``tpe``, ``random`` or ``grid``
    (every choice and three points per range). ``evaluate_best`` trains the best configuration on the
    whole dataset once and reports its test accuracy.
    """
    from cnnkit.tune.runner import run_study

    base = _base_config(data, config, overrides)
    if method not in METHODS:
        raise CnnkitError(f"--sampler must be one of {', '.join(METHODS)}, not {method!r}")
    if trials < 1:
        raise CnnkitError(f"--trials must be at least 1, not {trials}")
    if timeout is not None and timeout <= 0:
        raise CnnkitError(f"--timeout must be above 0 minutes, not {timeout / 60:g}")
    study_dir = Path(study) if study is not None else Path("studies") / default_run_name(base.data, base.model)
    study_dir.mkdir(parents=True, exist_ok=True)
    lock_for_resume(study_dir)
    try:
        searched = _space(space, base, given=set(overrides) | _file_options(config))
        if not searched.params:
            raise CnnkitError("every searched option was given as a training option; leave one free or pass --space")
        return run_study(base, searched, study_dir, trials, timeout, method, evaluate_best, progress)
    finally:
        release_run_dir(study_dir)


def _base_config(data: str | Path | None, config: TrainConfig | str | Path | None, overrides: dict) -> TrainConfig:
    base = config if isinstance(config, TrainConfig) else TrainConfig.from_file(config) if config else TrainConfig()
    if data is not None:
        overrides = {**overrides, "data": str(data)}
    base = base.with_overrides(**overrides)
    if base.data is None:
        raise CnnkitError("give the data to tune on: a folder of class folders, or a built-in dataset name")
    return base


def _file_options(config: TrainConfig | str | Path | None) -> set[str]:
    if config is None or isinstance(config, TrainConfig):
        return set()
    from cnnkit.fileio import read_yaml

    return set(read_yaml(config) or {}) - {"resolved", "format"}


def _space(space: str | Path | SearchSpace | None, base: TrainConfig, given: set[str]) -> SearchSpace:
    """The space to search; options the user gave (flags, keywords, a config file) stay fixed in the default one."""
    from cnnkit.models import get_model_info
    from cnnkit.models.starting import plan_weights

    if isinstance(space, SearchSpace):
        return space
    pretrained = plan_weights(get_model_info(base.model), base.pretrained, base.weights).pretrained
    default = default_space(pretrained, base.optimizer)
    if base.fine_tune_epochs == 0:  # a head on frozen features: nothing is fine-tuned
        given = given | {"fine_tune_lr_factor", "unfreeze"}
    searched = SearchSpace(tuple(param for param in default.params if param.name not in given))
    return searched if space is None else load_space(space, searched, base)


__all__ = ["TuneResult", "tune"]
