"""How good is the model really: accuracy, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix

from cnnkit.data.datasets import DecodedImages, decode_images
from cnnkit.data.folders import DatasetSplits
from cnnkit.errors import CnnkitError
from cnnkit.evaluate.plots import plot_confusion_matrix
from cnnkit.fileio import write_json
from cnnkit.predictor import Predictor
from cnnkit.run import Run, load_run


@dataclass
class Evaluation:
    """Scores of a model on one split. ``probabilities`` and ``sources`` allow deeper analysis."""

    split: str
    classes: list[str]
    accuracy: float
    report: dict[str, Any]
    confusion: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    sources: list[str]
    tta: str = "none"
    skipped: list[str] = field(default_factory=list)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "num_images": len(self.labels),
            "accuracy": self.accuracy,
            "tta": self.tta,
            "per_class": {name: self.report[name] for name in self.classes},
            "macro_avg": self.report["macro avg"],
            "weighted_avg": self.report["weighted avg"],
            "confusion_matrix": self.confusion.tolist(),
            "classes": self.classes,
            "skipped_files": self.skipped,
        }


def score(
    probabilities: torch.Tensor | np.ndarray, decoded: DecodedImages, classes: list[str], split: str, tta: str
) -> Evaluation:
    """Compute every metric from predicted probabilities and true labels."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = decoded.labels.numpy()
    predicted = probabilities.argmax(1)
    indices = list(range(len(classes)))
    report = classification_report(
        labels, predicted, labels=indices, target_names=classes, output_dict=True, zero_division=0
    )
    return Evaluation(
        split=split,
        classes=classes,
        accuracy=float((predicted == labels).mean()) if len(labels) else 0.0,
        report=report,
        confusion=confusion_matrix(labels, predicted, labels=indices),
        labels=labels,
        probabilities=probabilities,
        sources=decoded.sources,
        tta=tta,
        skipped=decoded.skipped,
    )


def evaluate(
    run: str | Path | Run,
    data: str | Path | DatasetSplits | None = None,
    split: str | None = None,
    tta: str = "none",
    batch_size: int | None = None,
    device: str = "auto",
    save: bool = True,
) -> Evaluation:
    """Evaluate a trained run on a split of its own data (or of ``data``: a folder with the same class
    folders, or a :class:`DatasetSplits`).

    ``split`` defaults to ``test`` when the dataset has one, else ``val``. With ``save``, writes
    ``evaluation_<split>.json`` and ``confusion_matrix.png`` into the run folder.
    """
    run = run if isinstance(run, Run) else load_run(run)
    dataset = data if isinstance(data, DatasetSplits) else run.load_dataset(data)
    if dataset.classes != run.classes:
        raise CnnkitError(
            f"classes of {dataset.root} ({', '.join(dataset.classes)}) differ from the run's ({', '.join(run.classes)})"
        )
    split = split or ("test" if dataset.test is not None else "val")
    predictor = Predictor.create(run.load_model(), run.classes, device=device)
    decoded = decode_images(dataset.split(split), predictor.preprocessing)
    if len(decoded.labels) == 0:
        raise CnnkitError(f"the {split} split has no readable images")
    evaluation = score(predictor.probabilities(decoded.images, batch_size, tta), decoded, run.classes, split, tta)
    if save:
        write_json(run.path / f"evaluation_{split}.json", evaluation.to_dict())
        plot_confusion_matrix(
            evaluation.confusion,
            run.classes,
            run.path / "confusion_matrix.png",
            title=f"Confusion matrix ({split}, accuracy {evaluation.accuracy:.1%})",
        )
    return evaluation
