"""The run folder: everything a training run leaves behind, and how to load it back.

Layout of ``runs/NAME/``::

    config.yaml         model name and kwargs, preprocessing, data, hyperparameters
    classes.json        class names; index i is the model's output i
    model.safetensors   best weights (by validation accuracy across all stages)
    history.csv         one row per epoch: loss, accuracy, val_loss, val_accuracy, lr, stage, seconds
                        (the epoch's duration) and elapsed (seconds since the run started)
    curves.png          training curves
    metrics.json        headline numbers

Every file is written atomically (see :mod:`cnnkit.fileio`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.fileio import read_json, read_yaml, write_text
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import Preprocessing

HISTORY_COLUMNS = ("epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "elapsed")


def new_run_dir(out: str | Path | None, default_name: str, root: str | Path = "runs") -> Path:
    """``out`` if given and unused, else ``runs/<default_name>``, suffixed -2, -3... so no run is overwritten."""
    if out is not None:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise CnnkitError(f"--out {path} already holds files; choose a new folder so no earlier run is lost")
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(root) / default_name
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_history(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key != "stage":
                row[key] = float(value) if value not in ("", None) else None
    return rows


@dataclass
class Run:
    """A finished (or loaded) run: its folder, config, classes and, once loaded, its model."""

    path: Path
    config: dict[str, Any]
    classes: list[str]
    metrics: dict[str, Any]
    model: Classifier | None = None

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.config["preprocessing"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_history(self.path / "history.csv")

    def load_model(self) -> Classifier:
        """Rebuild the architecture from config.yaml and load model.safetensors."""
        if self.model is None:
            from cnnkit.models.registry import create_model

            self.model = create_model(
                self.config["model"],
                num_classes=len(self.classes),
                pretrained=False,
                image_size=self.preprocessing.input_size,
                weights=self.path / "model.safetensors",
                head=self.config.get("head", "linear"),
                **self.config.get("model_kwargs", {}),
            )
            self.model.preprocessing = self.preprocessing
            self.model.eval()
        return self.model


def load_run(path: str | Path) -> Run:
    """Open a run folder written by :func:`cnnkit.train`."""
    path = Path(path)
    missing = [name for name in ("config.yaml", "classes.json", "model.safetensors") if not (path / name).is_file()]
    if not path.is_dir() or missing:
        what = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
        raise CnnkitError(f"run folder {path} {what}; pass a folder written by 'cnnkit train'")
    metrics_path = path / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return Run(path, read_yaml(path / "config.yaml"), read_json(path / "classes.json"), metrics)
