"""What every export is checked against: the run's validation images and the original model in fp32.

The reference is PyTorch on the CPU in fp32, never bf16 autocast: bf16 keeps about three significant
digits, far coarser than the 1e-4 the float exports are held to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cnnkit.data.datasets import decode_images
from cnnkit.data.folders import DatasetSplits, ImageList
from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier
from cnnkit.predictor import Predictor
from cnnkit.run import Run

MAX_CHECK_IMAGES = 500
FP32_TOLERANCE = 1e-4


@dataclass
class CheckImages:
    """Validation images (prepared uint8 NCHW), their labels and the fp32 PyTorch probabilities for them."""

    images: torch.Tensor
    labels: torch.Tensor
    reference: torch.Tensor
    split_size: int
    reference_boxes: torch.Tensor | None = None  # localization runs: the fp32 PyTorch boxes

    @property
    def reference_accuracy(self) -> float:
        return accuracy(self.reference, self.labels)


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(1) == labels).float().mean())


def evenly_spaced(split: ImageList, limit: int) -> ImageList:
    """At most ``limit`` images spread over the whole split, so every class (stored in order) is represented."""
    if len(split) <= limit:
        return split
    return split.subset(np.linspace(0, len(split) - 1, limit).round().astype(int).tolist())


def run_dataset(run: Run) -> DatasetSplits:
    """The data the run was trained on, split exactly as in training."""
    try:
        return run.load_dataset()
    except CnnkitError as exc:
        raise CnnkitError(f"export checks need the run's validation images, but {exc}") from exc


def load_check_images(run: Run, model: Classifier, temperature: float, limit: int = MAX_CHECK_IMAGES) -> CheckImages:
    """Decode up to ``limit`` validation images and run the original model on them in fp32."""
    split = run_dataset(run).val
    decoded = decode_images(evenly_spaced(split, limit), run.preprocessing)
    if len(decoded.labels) == 0:
        raise CnnkitError(f"no readable validation images in {run.config.data} to check the export against")
    predictor = Predictor.create(model, run.classes, device="cpu", precision="fp32", temperature=temperature)
    if predictor.localizes:
        reference, boxes = predictor.localize(decoded.images)
        return CheckImages(decoded.images, decoded.labels, reference, len(split), boxes)
    return CheckImages(decoded.images, decoded.labels, predictor.probabilities(decoded.images), len(split))


def load_calibration_images(run: Run, limit: int) -> torch.Tensor:
    """Up to ``limit`` training images, prepared as for evaluation: what int8 calibration should see."""
    return decode_images(evenly_spaced(run_dataset(run).train, limit), run.preprocessing).images


def compare(probabilities: torch.Tensor, checks: CheckImages) -> dict[str, float]:
    """How an exported model's probabilities differ from the fp32 PyTorch reference."""
    return {
        "top1_agreement": float((probabilities.argmax(1) == checks.reference.argmax(1)).float().mean()),
        "max_abs_prob_diff": float((probabilities - checks.reference).abs().max()),
        "accuracy": accuracy(probabilities, checks.labels),
    }


def parity_checks(
    probabilities: torch.Tensor, checks: CheckImages, boxes: torch.Tensor | None = None
) -> dict[str, float | bool]:
    """Float exports must pick the same class for every image and stay within :data:`FP32_TOLERANCE`,
    in probability and, for localization, in every box corner (in units of the image side)."""
    result: dict[str, float | bool] = {**compare(probabilities, checks), "tolerance": FP32_TOLERANCE}
    result["passed"] = result["top1_agreement"] == 1.0 and result["max_abs_prob_diff"] <= FP32_TOLERANCE
    if checks.reference_boxes is not None:
        difference = float((boxes - checks.reference_boxes).abs().max()) if boxes is not None else float("inf")
        result["max_abs_box_diff"] = difference
        result["passed"] = result["passed"] and difference <= FP32_TOLERANCE
    return result


def compare_latency(runners: dict[str, Callable[[], object]], rounds: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per call of each runner, timed in alternation so a busy CPU slows them all alike."""
    for runner in runners.values():
        for _ in range(warmup):
            runner()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner()
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(values) * 1000) for name, values in times.items()}
