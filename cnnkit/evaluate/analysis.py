"""One call from a run to everything worth knowing about its predictions on a split, saved into the run.

``analyze`` evaluates the run, reads the probabilities (:mod:`cnnkit.evaluate.interpret`), measures
calibration and, with ``calibrate``, fits a temperature on the validation split that prediction then
applies. ``cnnkit evaluate`` prints its headline; ``cnnkit report`` turns it into HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnkit.data.folders import DatasetSplits
from cnnkit.evaluate.calibration import (
    Calibration,
    apply_temperature,
    expected_calibration_error,
    fit_calibration,
    load_calibration,
    save_calibration,
)
from cnnkit.evaluate.dataset_views import crops_of, to_hwc
from cnnkit.evaluate.interpret import Interpretation, PredictionCase, interpret
from cnnkit.evaluate.metrics import Evaluation, confusion_matrix_name, evaluate, evaluation_data
from cnnkit.evaluate.plots import plot_confused_pairs, plot_image_grid, plot_reliability_diagram, plot_roc_curves
from cnnkit.fileio import write_json
from cnnkit.run import Run, load_run


def run_dataset(run: Run, data: str | Path | DatasetSplits | None = None) -> DatasetSplits:
    """The dataset a run was trained on, split exactly as training split it, or ``data`` (see ``evaluation_data``)."""
    return evaluation_data(run, data)


@dataclass
class Analysis:
    """An evaluation with its interpretation and calibration, and the files saved for them."""

    evaluation: Evaluation
    interpretation: Interpretation
    calibration: Calibration | None
    calibrated_ece: float | None
    files: dict[str, Path]

    @property
    def macro_f1(self) -> float:
        return float(self.evaluation.report["macro avg"]["f1-score"])

    def headline(self) -> dict[str, Any]:
        """The numbers to show first: accuracy, macro F1, top-k accuracy and calibration error."""
        return {
            "accuracy": self.evaluation.accuracy,
            "macro_f1": self.macro_f1,
            "top_k": self.interpretation.top_k,
            "top_k_accuracy": self.interpretation.top_k_accuracy,
            "expected_calibration_error": self.interpretation.expected_calibration_error,
            "calibrated_expected_calibration_error": self.calibrated_ece,
            "temperature": self.calibration.temperature if self.calibration else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.evaluation.to_dict(),
            "headline": self.headline(),
            "interpretation": self.interpretation.to_dict(),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "files": {name: str(path) for name, path in self.files.items()},
        }


def _gallery(cases: list[PredictionCase], images: dict[str, torch.Tensor], path: Path, title: str) -> None:
    plot_image_grid(
        [to_hwc(images[case.source]) for case in cases],
        [f"{case.true_label} → {case.predicted_label}\np={case.probability:.2f}" for case in cases],
        path,
        columns=6,
        title=title,
    )


def save_analysis(analysis: Analysis, run: Run, dataset: DatasetSplits) -> dict[str, Path]:
    """Write the interpretation JSON and its figures (ROC, reliability, confused pairs, galleries) into the run.

    Returns every file of the analysis, including the evaluation JSON and confusion matrix that
    :func:`cnnkit.evaluate.evaluate` wrote.
    """
    evaluation, interpretation = analysis.evaluation, analysis.interpretation
    split, tag = evaluation.split, evaluation.tag
    files = {
        "evaluation": run.path / f"evaluation_{tag}.json",
        "confusion_matrix": run.path / confusion_matrix_name(evaluation),
        "interpretation": run.path / f"interpretation_{tag}.json",
        "roc_curves": run.path / f"roc_curves_{tag}.png",
        "reliability": run.path / f"reliability_{tag}.png",
        "confused_pairs": run.path / f"confused_pairs_{tag}.png",
        "confidently_wrong": run.path / f"confidently_wrong_{tag}.png",
        "hesitant": run.path / f"hesitant_{tag}.png",
    }
    write_json(files["interpretation"], {**interpretation.to_dict(), "headline": analysis.headline()})
    plot_roc_curves(evaluation.probabilities, evaluation.labels, evaluation.classes, files["roc_curves"])
    temperature = analysis.calibration.temperature if analysis.calibration else None
    plot_reliability_diagram(evaluation.probabilities, evaluation.labels, files["reliability"], temperature)
    plot_confused_pairs(interpretation.confused_pairs, files["confused_pairs"])
    cases = interpretation.confidently_wrong + interpretation.hesitant
    images = crops_of(dataset.split(split), sorted({case.source for case in cases}), run.preprocessing)
    _gallery(
        interpretation.confidently_wrong, images, files["confidently_wrong"], "Confidently wrong (true → predicted)"
    )
    title = f"Hesitant: top two classes less than {interpretation.hesitant_margin:g} apart"
    _gallery(interpretation.hesitant, images, files["hesitant"], title)
    return files


def calibrate(run: str | Path | Run, data: str | Path | DatasetSplits | None = None, tta: str = "none") -> Calibration:
    """Fit a temperature on the validation split and store it in the run (``calibration.json``)."""
    run = run if isinstance(run, Run) else load_run(run)
    validation = evaluate(run, data=run_dataset(run, data), split="val", tta=tta, save=False)
    calibration = fit_calibration(validation.probabilities, validation.labels, "val")
    save_calibration(calibration, run.path)
    return calibration


def analyze(
    run: str | Path | Run,
    data: str | Path | DatasetSplits | None = None,
    split: str | None = None,
    tta: str = "none",
    calibrate_first: bool = False,
    save: bool = True,
) -> Analysis:
    """Evaluate ``run`` on ``split`` and interpret the result; optionally fit a temperature first.

    With ``save``, writes what :func:`cnnkit.evaluate.evaluate` writes plus ``interpretation_<split>.json``
    and its figures. The calibration shown is the one just fitted or the one stored in the run.
    """
    run = run if isinstance(run, Run) else load_run(run)
    dataset = run_dataset(run, data)
    own_validation = None if dataset.layout == "whole" else dataset  # a whole folder has no validation split
    calibration = calibrate(run, own_validation, tta) if calibrate_first else load_calibration(run.path)
    evaluation = evaluate(run, data=dataset, split=split, tta=tta, save=save)
    calibrated_ece = (
        expected_calibration_error(
            apply_temperature(evaluation.probabilities, calibration.temperature), evaluation.labels
        )
        if calibration
        else None
    )
    analysis = Analysis(evaluation, interpret(evaluation), calibration, calibrated_ece, {})
    if save:
        analysis.files = save_analysis(analysis, run, dataset)
    return analysis
