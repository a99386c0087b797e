"""What a search varies: one :class:`Param` per training option, each a range or a list of choices.

Every parameter names a :class:`~cnnkit.config.TrainConfig` field, so a trial is an ordinary
training configuration and the best one is a file ``cnnkit train --config`` reads. The default
spaces follow the training recipe: for a pretrained model they vary what the feature cache does not
depend on (learning rates, L2, dropout, head), plus two values each of augmentation and unfreezing
depth, so a 30-trial study extracts at most four caches. A YAML file narrows or widens them::

    lr: {low: 0.0001, high: 0.01, log: true}   # a range (log: sample on a log scale)
    head: [linear, mlp]                         # a list of choices
    cache_views: {low: 1, high: 4}              # whole numbers, since the option is one
    dropout: 0.3                                # fixed for every trial: not searched
    augment: null                               # not searched: the base configuration's value
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.config import Optimizer, TrainConfig, base_type, field_types
from cnnkit.errors import CnnkitError

NOT_SEARCHABLE = ("data", "out", "weights", "device", "logger", "image_cache", "max_pixels", "drop_empty_classes",
                  "val_split", "test_split", "seed")  # fmt: skip
GRID_POINTS = 3  # values a range contributes to a grid search: both ends and the middle
LR_RANGES = {Optimizer.adam: (1e-4, 1e-2), Optimizer.sgd: (1e-2, 1.0)}  # SGD's best rates run about 100x Adam's


@dataclass(frozen=True)
class Param:
    """One searched option: a float or whole-number range (optionally on a log scale), or choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this option."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def grid_values(self) -> list[Any]:
        """The values a grid search tries: every choice, or both ends and the middle of a range."""
        if self.choices is not None:
            return list(self.choices)
        low, high = float(self.low), float(self.high)
        middle = math.sqrt(low * high) if self.log else (low + high) / 2
        values = [low, middle, high][:GRID_POINTS]
        if self.integer:
            values = [round(value) for value in values]
        return list(dict.fromkeys(values))

    def describe(self) -> str:
        if self.choices is not None:
            return ", ".join(str(choice) for choice in self.choices)
        return f"{self.low:g} .. {self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class SearchSpace:
    """The searched options, and the ones a space file fixes for every trial."""

    params: tuple[Param, ...]
    fixed: tuple[tuple[str, Any], ...] = ()

    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def to_dict(self) -> dict[str, Any]:
        """A plain description, stored with the study so a resumed study can check it searches the same."""
        searched = {p.name: (list(p.choices) if p.choices is not None else [p.low, p.high, p.log]) for p in self.params}
        return {"searched": searched, "fixed": dict(self.fixed)}


def default_space(pretrained: bool, optimizer: Optimizer | str = Optimizer.adam) -> SearchSpace:
    """The recipe's search space: two-stage transfer learning, or one stage from scratch; the learning
    rate's range suits ``optimizer``."""
    common = (
        Param("lr", *LR_RANGES[Optimizer(optimizer)], log=True),
        Param("weight_decay", 1e-6, 1e-2, log=True),
        Param("dropout", 0.0, 0.5),
    )
    if pretrained:
        return SearchSpace((
            *common,
            Param("head", choices=("linear", "mlp")),
            Param("fine_tune_lr_factor", 0.01, 0.3, log=True),
            Param("augment", choices=("standard", "light")),
            Param("unfreeze", choices=("auto", "top:1")),
        ))  # fmt: skip
    return SearchSpace((
        *common,
        Param("batch_size", choices=(16, 32, 64, 128)),
        Param("epochs", 5, 30, integer=True),
        Param("augment", choices=("none", "light", "standard")),
    ))  # fmt: skip


def load_space(path: str | Path, base: SearchSpace, config: TrainConfig) -> SearchSpace:
    """``base`` changed by the YAML file at ``path``: each entry replaces, adds, fixes or drops one option."""
    from cnnkit.fileio import read_yaml

    if not Path(path).is_file():
        raise CnnkitError(f"search space file {path} does not exist; give a YAML file such as 'lr: {{low: 1e-4, ...}}'")
    entries = read_yaml(path)
    if not isinstance(entries, dict):
        raise CnnkitError(f"search space file {path} must be a mapping of option names to ranges or choices")
    params = {param.name: param for param in base.params}
    fixed = dict(base.fixed)
    for name, entry in entries.items():
        where = f"search space file {path}, option {name!r}"
        params.pop(name, None)
        fixed.pop(name, None)
        if entry is None:
            continue
        if not isinstance(entry, dict | list):
            _check_values(config, name, [entry], where)
            fixed[name] = entry
            continue
        param = _parse_param(name, entry, where)
        _check_values(config, name, param.grid_values(), where)
        params[name] = param
    if not params:
        raise CnnkitError(f"search space file {path} leaves nothing to search; give at least one range or list")
    return SearchSpace(tuple(params.values()), tuple(fixed.items()))


def _parse_param(name: str, entry: dict | list, where: str) -> Param:
    if isinstance(entry, list):
        if not entry:
            raise CnnkitError(f"{where}: an empty list of choices; give at least one value")
        return Param(name, choices=tuple(entry))
    unknown = sorted(set(entry) - {"low", "high", "log"})
    low, high = entry.get("low"), entry.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if unknown or not numbers or low >= high:
        raise CnnkitError(f"{where}: a range is {{low: A, high: B}} with A < B and optional log: true")
    log = bool(entry.get("log", False))
    if log and low <= 0:
        raise CnnkitError(f"{where}: a log range needs low > 0, not {low}")
    kind = base_type(field_types()[name])[0] if name in field_types() else float
    return Param(name, float(low), float(high), log=log, integer=kind is int)


def _check_values(config: TrainConfig, name: str, values: list[Any], where: str) -> None:
    """Refuse a space that could draw a value training would refuse, before any trial runs."""
    if name in NOT_SEARCHABLE:
        raise CnnkitError(f"{where}: {name} is the same for every trial; pass it as a training option instead")
    for value in values:
        try:
            config.with_overrides(**{name: value})
        except CnnkitError as exc:
            raise CnnkitError(f"{where}: {exc}") from None
