"""What a study's trials are made of and leave behind: each trial's options and folder, the result."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnkit.config import ImageCache, TrainConfig
from cnnkit.fileio import write_yaml
from cnnkit.tune.space import SearchSpace

BEST_CONFIG = "best.yaml"
TRIALS_DIR = "trials"


@dataclass
class TuneResult:
    """What a search found: every trial, the best configuration and where everything was written."""

    study_dir: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_config: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    evaluated: dict[str, Any] | None = None  # the best configuration retrained and tested (--evaluate-best)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": str(self.study_dir), "trials": self.trials, "best": self.best,
            "best_config": None if self.best_config is None else str(self.best_config),
            "files": {name: str(path) for name, path in self.files.items()}, "evaluated": self.evaluated,
        }  # fmt: skip


def trial_config(base: TrainConfig, space: SearchSpace, params: dict[str, Any], out: Path) -> TrainConfig:
    """The training options of one trial: the base, the space's fixed values, the drawn values.

    Pixels kept in memory would be decoded again by every trial; on disk they are decoded once.
    """
    image_cache = ImageCache.disk if base.image_cache == ImageCache.ram else base.image_cache
    return base.with_overrides(**dict(space.fixed), **params, out=str(out), image_cache=image_cache)


def best_config(base: TrainConfig, space: SearchSpace, params: dict[str, Any]) -> TrainConfig:
    """The best trial's options as a user runs them again (no trial folder)."""
    return replace(base.with_overrides(**dict(space.fixed), **params), out=None)


def write_best(study_dir: Path, config: TrainConfig) -> Path:
    path = study_dir / BEST_CONFIG
    write_yaml(path, config.to_dict())
    return path


def keep_only(trials_dir: Path, keep: set[int]) -> None:
    """Remove the folders of trials that are neither the best nor running: they are all in ``study.db``."""
    if not trials_dir.is_dir():
        return
    for folder in trials_dir.iterdir():
        number = folder.name.removeprefix("trial-")
        if folder.is_dir() and number.isdigit() and int(number) not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def trial_dir(study_dir: Path, number: int) -> Path:
    return study_dir / TRIALS_DIR / f"trial-{number:04d}"
