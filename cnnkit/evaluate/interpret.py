"""Where and how the model goes wrong: worst predictions, confused classes, top-k accuracy, ROC AUC.

The notes' advice: after the headline accuracy, look at the images the model was most sure about and
still got wrong. Some show a real blind spot; others turn out to carry the wrong label in the dataset.
The hesitant ones (two classes nearly tied) show where the classes overlap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from cnnkit.evaluate.calibration import expected_calibration_error
from cnnkit.evaluate.metrics import Evaluation

GALLERY_SIZE = 12
HESITANT_MARGIN = 0.2  # a prediction is hesitant when the runner-up's probability is this close to the top one


@dataclass
class PredictionCase:
    """One image's prediction, with what it should have been and how close the runner-up came."""

    index: int
    source: str
    true_label: str
    predicted_label: str
    probability: float
    true_probability: float
    runner_up_label: str
    margin: float

    @property
    def correct(self) -> bool:
        return self.true_label == self.predicted_label

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct}


@dataclass
class ConfusedPair:
    """How often images of ``true_label`` were called ``predicted_label``; ``share`` is of the true class's images."""

    true_label: str
    predicted_label: str
    count: int
    share: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _case(
    index: int, probabilities: np.ndarray, labels: np.ndarray, sources: list[str], classes: list[str]
) -> PredictionCase:
    row = probabilities[index]
    first, second = np.argsort(-row, kind="stable")[:2]
    return PredictionCase(
        index=index,
        source=sources[index],
        true_label=classes[labels[index]],
        predicted_label=classes[first],
        probability=float(row[first]),
        true_probability=float(row[labels[index]]),
        runner_up_label=classes[second],
        margin=float(row[first] - row[second]),
    )


def confidently_wrong(
    probabilities: np.ndarray, labels: np.ndarray, sources: list[str], classes: list[str], limit: int = GALLERY_SIZE
) -> list[PredictionCase]:
    """Wrong predictions, the most confident in the wrong class first."""
    wrong = np.flatnonzero(probabilities.argmax(1) != labels)
    order = wrong[np.argsort(-probabilities[wrong].max(1), kind="stable")]
    return [_case(int(i), probabilities, labels, sources, classes) for i in order[:limit]]


def _margins(probabilities: np.ndarray) -> np.ndarray:
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def hesitant(
    probabilities: np.ndarray,
    labels: np.ndarray,
    sources: list[str],
    classes: list[str],
    limit: int = GALLERY_SIZE,
    max_margin: float = HESITANT_MARGIN,
) -> list[PredictionCase]:
    """Predictions, right or wrong, whose top two classes are less than ``max_margin`` apart, closest first."""
    margins = _margins(probabilities)
    order = np.argsort(margins, kind="stable")
    order = order[margins[order] < max_margin]
    return [_case(int(i), probabilities, labels, sources, classes) for i in order[:limit]]


def confused_pairs(confusion: np.ndarray, classes: list[str], limit: int = 10) -> list[ConfusedPair]:
    """Off-diagonal cells of the confusion matrix (rows = true class), largest count first."""
    support = confusion.sum(1)
    cells = [(int(confusion[t, p]), t, p) for t in range(len(classes)) for p in range(len(classes)) if t != p]
    cells = sorted((cell for cell in cells if cell[0] > 0), key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [ConfusedPair(classes[t], classes[p], count, count / support[t]) for count, t, p in cells[:limit]]


def default_top_k(num_classes: int) -> int:
    """k for the headline top-k accuracy: 5 as for ImageNet, but at most half the classes (rounded up)."""
    return max(1, min(5, math.ceil(num_classes / 2)))


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the ``k`` most probable (ties count in the image's favour)."""
    if len(labels) == 0:
        return 0.0
    true_probability = probabilities[np.arange(len(labels)), labels]
    rank = (probabilities > true_probability[:, None]).sum(1)
    return float((rank < k).mean())


def roc_auc_per_class(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """One-vs-rest ROC AUC per class; ``None`` where the split lacks positives or negatives for that class."""
    result: dict[str, float | None] = {}
    for index, name in enumerate(classes):
        positive = labels == index
        result[name] = (
            float(roc_auc_score(positive, probabilities[:, index])) if 0 < positive.sum() < len(labels) else None
        )
    return result


@dataclass
class Interpretation:
    """Everything read from one split's predicted probabilities beyond accuracy and the per-class report."""

    split: str
    top_k: int
    top_k_accuracy: float
    expected_calibration_error: float
    roc_auc: dict[str, float | None]
    confused_pairs: list[ConfusedPair]
    confidently_wrong: list[PredictionCase]
    hesitant: list[PredictionCase]
    hesitant_count: int = 0  # images with a margin below hesitant_margin; the gallery shows the closest
    hesitant_margin: float = HESITANT_MARGIN

    @property
    def macro_roc_auc(self) -> float | None:
        values = [v for v in self.roc_auc.values() if v is not None]
        return float(np.mean(values)) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "expected_calibration_error": self.expected_calibration_error,
            "roc_auc": self.roc_auc,
            "macro_roc_auc": self.macro_roc_auc,
            "confused_pairs": [pair.to_dict() for pair in self.confused_pairs],
            "confidently_wrong": [case.to_dict() for case in self.confidently_wrong],
            "hesitant": [case.to_dict() for case in self.hesitant],
            "hesitant_count": self.hesitant_count,
            "hesitant_margin": self.hesitant_margin,
        }


def interpret(evaluation: Evaluation, limit: int = GALLERY_SIZE, top_k: int | None = None) -> Interpretation:
    """Worst and hesitant predictions, confused pairs, top-k accuracy, ROC AUC and ECE of an evaluation."""
    probabilities, labels, classes = evaluation.probabilities, evaluation.labels, evaluation.classes
    k = top_k or default_top_k(len(classes))
    return Interpretation(
        split=evaluation.split,
        top_k=k,
        top_k_accuracy=top_k_accuracy(probabilities, labels, k),
        expected_calibration_error=expected_calibration_error(probabilities, labels),
        roc_auc=roc_auc_per_class(probabilities, labels, classes),
        confused_pairs=confused_pairs(evaluation.confusion, classes),
        confidently_wrong=confidently_wrong(probabilities, labels, evaluation.sources, classes, limit),
        hesitant=hesitant(probabilities, labels, evaluation.sources, classes, limit),
        hesitant_count=int((_margins(probabilities) < HESITANT_MARGIN).sum()) if len(labels) else 0,
    )
