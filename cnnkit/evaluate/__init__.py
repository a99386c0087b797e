"""Evaluation: metrics, interpretation, calibration, dataset views, training curves and the HTML report.

The package itself is callable: ``cnnkit.evaluate(...)`` is :func:`cnnkit.evaluate.metrics.evaluate`.
"""

from cnnkit._callable import make_package_callable
from cnnkit.evaluate.analysis import Analysis, analyze, calibrate
from cnnkit.evaluate.calibration import (
    Calibration,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from cnnkit.evaluate.curves import CurveLandmarks, find_landmarks
from cnnkit.evaluate.dataset_views import DatasetSummary, save_dataset_views, summarize_dataset
from cnnkit.evaluate.interpret import (
    ConfusedPair,
    Interpretation,
    PredictionCase,
    confidently_wrong,
    confused_pairs,
    hesitant,
    interpret,
    roc_auc_per_class,
    top_k_accuracy,
)
from cnnkit.evaluate.metrics import Evaluation, evaluate, score
from cnnkit.evaluate.model_card import ModelCard, model_card
from cnnkit.evaluate.plots import plot_confusion_matrix, plot_curves
from cnnkit.evaluate.report import build_report

__all__ = [
    "Analysis",
    "Calibration",
    "ConfusedPair",
    "CurveLandmarks",
    "DatasetSummary",
    "Evaluation",
    "Interpretation",
    "ModelCard",
    "PredictionCase",
    "analyze",
    "apply_temperature",
    "build_report",
    "calibrate",
    "confidently_wrong",
    "confused_pairs",
    "evaluate",
    "expected_calibration_error",
    "find_landmarks",
    "fit_temperature",
    "hesitant",
    "interpret",
    "model_card",
    "plot_confusion_matrix",
    "plot_curves",
    "reliability_bins",
    "roc_auc_per_class",
    "save_dataset_views",
    "score",
    "summarize_dataset",
    "top_k_accuracy",
]

make_package_callable(__name__, evaluate)
