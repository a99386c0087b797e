"""Can the model's confidence be taken at its word? Expected calibration error and temperature scaling.

A model that says 0.95 should be right 95% of the time. Convnets trained with cross-entropy are
usually over-confident: the softmax of their logits is too peaked. Temperature scaling (Guo et al.,
2017) divides the logits by one number ``T`` fitted on the validation split: it leaves every
prediction's winner, hence accuracy, unchanged and only makes the probabilities honest.

Functions here take probabilities, not logits: ``log(p)`` equals the logits up to a per-image
constant, which softmax ignores, so ``softmax(log(p) / T)`` is ``softmax(logits / T)`` (exactly,
except where a float32 softmax underflowed to 0; those are clipped to the smallest float32).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from cnnkit.fileio import read_json, write_json
from cnnkit.run import CALIBRATION_FILE

ECE_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass
class ReliabilityBin:
    """Images whose top probability lies in ``(lower, upper]``: how sure the model was, how often it was right."""

    lower: float
    upper: float
    count: int
    confidence: float
    accuracy: float


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Equal-width bins of top-1 confidence, each with its mean confidence and accuracy (empty bins: 0, 0)."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    result = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        result.append(
            ReliabilityBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=count,
                confidence=float(confidence[members].mean()) if count else 0.0,
                accuracy=float(correct[members].mean()) if count else 0.0,
            )
        )
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Average gap between confidence and accuracy over the bins, weighted by how many images each holds."""
    total = len(labels)
    if total == 0:
        return 0.0
    return float(
        sum(b.count * abs(b.accuracy - b.confidence) for b in reliability_bins(probabilities, labels, bins)) / total
    )


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, np.finfo(np.float32).tiny, None))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the same model gives with its logits divided by ``temperature``."""
    scaled = _log_probabilities(probabilities) / temperature
    scaled -= scaled.max(1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true labels: the loss temperature scaling minimises."""
    return float(-_log_probabilities(probabilities)[np.arange(len(labels)), labels].mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (searched on a log scale)."""
    log_bounds = tuple(np.log(TEMPERATURE_BOUNDS))
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(apply_temperature(probabilities, float(np.exp(log_t))), labels),
        bounds=log_bounds,
        method="bounded",
    )
    return float(np.exp(result.x))


@dataclass
class Calibration:
    """A fitted temperature and what it did on the split it was fitted on."""

    temperature: float
    split: str
    num_images: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_calibration(probabilities: np.ndarray, labels: np.ndarray, split: str) -> Calibration:
    """Fit a temperature on one split's probabilities and measure NLL and ECE before and after."""
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    return Calibration(
        temperature=temperature,
        split=split,
        num_images=len(labels),
        nll_before=negative_log_likelihood(probabilities, labels),
        nll_after=negative_log_likelihood(calibrated, labels),
        ece_before=expected_calibration_error(probabilities, labels),
        ece_after=expected_calibration_error(calibrated, labels),
    )


def save_calibration(calibration: Calibration, run_dir: Path) -> None:
    """Store the temperature in the run, where :func:`cnnkit.predict` picks it up."""
    write_json(run_dir / CALIBRATION_FILE, calibration.to_dict())


def load_calibration(run_dir: Path) -> Calibration | None:
    """The run's stored calibration, or ``None`` if it was never calibrated."""
    path = run_dir / CALIBRATION_FILE
    return Calibration(**read_json(path)) if path.is_file() else None
