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
    data: str = ""  # the folder (or built-in dataset) scored
    tag: str = ""  # what its files are named after: the split for the run's own data, else the folder
    localization: dict[str, Any] | None = None  # localization runs: box_metrics' IoU scores, overall and per class
    boxes: np.ndarray | None = None  # predicted (N, 4) corners in [0, 1], aligned with sources
    true_boxes: np.ndarray | None = None  # annotated (N, 4) corners in [0, 1]

    def __post_init__(self) -> None:
        self.tag = self.tag or self.split

    @property
    def own_data(self) -> bool:
        return self.tag == self.split

    def describe(self) -> str:
        """What was scored: ``test split of DATA``, or ``all of DATA (a whole folder)`` for other data."""
        if self.split == "all":
            return f"all of {self.data}" + ("" if self.own_data else " (a whole folder)")
        return f"{self.split} split of {self.data}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "data": self.data,
            "scored": self.describe(),
            "num_images": len(self.labels),
            "accuracy": self.accuracy,
            "tta": self.tta,
            "per_class": {name: self.report[name] for name in self.classes},
            "macro_avg": self.report["macro avg"],
            "weighted_avg": self.report["weighted avg"],
            "confusion_matrix": self.confusion.tolist(),
            "classes": self.classes,
            "skipped_files": self.skipped,
            **({"localization": self.localization} if self.localization is not None else {}),
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


def other_data(run: Run, data: str | Path | DatasetSplits | None) -> bool:
    """Whether ``data`` is something else than the data the run was trained on."""
    if data is None:
        return False
    given = data.root if isinstance(data, DatasetSplits) else str(data)
    trained = str(run.config.data)
    return given != trained and Path(given).expanduser().resolve() != Path(trained).expanduser().resolve()


def evaluation_data(run: Run, data: str | Path | DatasetSplits | None) -> DatasetSplits:
    """The run's own data split as in training; another folder with split folders, split the same way;
    another flat folder of class sub-folders, whole (its every image is split ``all``)."""
    from cnnkit.data.folders import find_split_folders, scan_whole_folder

    if isinstance(data, DatasetSplits):
        return data
    if other_data(run, data) and Path(data).is_dir() and "train" not in find_split_folders(Path(data)):
        cfg = run.config
        return scan_whole_folder(data, max_pixels=cfg.max_pixels, drop_empty_classes=cfg.drop_empty_classes)
    return run.load_dataset(data)


def _file_tag(dataset: DatasetSplits, split: str) -> str:
    """``photos`` (whole) or ``photos_val``; a folder named like a split takes its parent's name too."""
    root = Path(dataset.root)
    name = root.name or dataset.name
    if name.lower() in ("train", "val", "valid", "validation", "test", "all"):
        name = f"{root.parent.name}_{name}"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return name if split == "all" else f"{name}_{split}"


def resolve_split(run: Run, dataset: DatasetSplits, split: str | None) -> tuple[str, str]:
    """(split, file tag): ``split`` defaults to ``all`` for a whole folder, else ``test`` when present, else ``val``."""
    from cnnkit.data.folders import canonical_split

    if split is None:
        split = "all" if dataset.layout == "whole" else "test" if dataset.test is not None else "val"
    split = canonical_split(split)
    return split, (_file_tag(dataset, split) if other_data(run, dataset) else split)


def evaluate(
    run: str | Path | Run,
    data: str | Path | DatasetSplits | None = None,
    split: str | None = None,
    tta: str = "none",
    batch_size: int | None = None,
    device: str = "auto",
    save: bool = True,
) -> Evaluation:
    """Evaluate a trained run on a split of its own data, or on ``data``: a folder with the same class
    folders (scored whole unless it has train/val/test folders), or a :class:`DatasetSplits`.

    ``split`` (train, val, test or all) defaults to ``test`` when the dataset has one, else ``val``;
    a whole folder defaults to ``all``. With ``save``, writes ``evaluation_<split>.json`` and
    ``confusion_matrix.png`` into the run folder; other data gets ``evaluation_<folder>.json`` and
    ``confusion_matrix_<folder>.png``, so the run's own evaluation is never overwritten.
    """
    run = run if isinstance(run, Run) else load_run(run)
    dataset = evaluation_data(run, data)
    if dataset.classes != run.classes:
        raise CnnkitError(
            f"classes of {dataset.root} ({', '.join(dataset.classes)}) differ from the run's ({', '.join(run.classes)})"
        )
    split, tag = resolve_split(run, dataset, split)
    dataset, boxes = annotated_boxes(run, dataset)
    predictor = Predictor.create(run.load_model(), run.classes, device=device)
    decoded = decode_images(dataset.split(split), predictor.preprocessing)
    if len(decoded.labels) == 0:
        raise CnnkitError(f"the {split} split of {dataset.root} has no readable images")
    if boxes is None:
        evaluation = score(predictor.probabilities(decoded.images, batch_size, tta), decoded, run.classes, split, tta)
    else:
        evaluation = score_boxes(predictor, decoded, boxes, split, tta, batch_size)
    evaluation.data, evaluation.tag = dataset.root, tag
    if save:
        write_json(run.path / f"evaluation_{tag}.json", evaluation.to_dict())
        plot_confusion_matrix(
            evaluation.confusion,
            run.classes,
            run.path / confusion_matrix_name(evaluation),
            title=f"Confusion matrix ({evaluation.describe()}, accuracy {evaluation.accuracy:.1%})",
        )
    return evaluation


def annotated_boxes(run: Run, dataset: DatasetSplits) -> tuple[DatasetSplits, dict[str, list[float]] | None]:
    """For a localization run: the images with one good box (as training kept them) and their boxes; else no boxes.

    The run's own data reads the annotations it was trained with; other data its own ``boxes.csv``, if any.
    """
    from cnnkit.data.boxes import resolve_task

    if run.facts.task != "localize":
        return dataset, None
    boxes_file = None if other_data(run, dataset) else run.config.boxes
    _, dataset, boxes = resolve_task("auto", boxes_file, dataset)
    return dataset, boxes


def score_boxes(
    predictor: Predictor, decoded: DecodedImages, boxes: dict[str, list[float]], split: str, tta: str,
    batch_size: int | None,
) -> Evaluation:  # fmt: skip
    """The class metrics of :func:`score` plus the boxes' IoU metrics (:func:`~cnnkit.evaluate.boxes.box_metrics`)."""
    from cnnkit.data.boxes import box_tensor
    from cnnkit.evaluate.boxes import box_metrics

    probabilities, predicted = predictor.localize(decoded.images, batch_size, tta)
    truth = box_tensor(decoded.sources, boxes)
    evaluation = score(probabilities, decoded, predictor.classes, split, tta)
    evaluation.localization = box_metrics(probabilities.argmax(1), predicted, decoded.labels, truth, predictor.classes)
    evaluation.boxes, evaluation.true_boxes = predicted.numpy(), truth.numpy()
    return evaluation


def confusion_matrix_name(evaluation: Evaluation) -> str:
    return "confusion_matrix.png" if evaluation.own_data else f"confusion_matrix_{evaluation.tag}.png"
