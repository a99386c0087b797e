"""Pictures where a picture beats a table: training curves, confusion, ROC, calibration and image grids."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from cnnkit.evaluate.calibration import apply_temperature, expected_calibration_error, reliability_bins
from cnnkit.evaluate.curves import find_landmarks
from cnnkit.fileio import save_figure

OVERFITTING_COLOR = "#d62728"
BEST_COLOR = "#2ca02c"


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy (and IoU for localization runs), train vs validation; a dashed line where a stage begins.

    The epoch of lowest validation loss is marked, and the epochs where the train/validation gap keeps
    widening (see :func:`cnnkit.evaluate.curves.find_landmarks`) are shaded as likely overfitting.
    """
    epochs = [int(row["epoch"]) for row in history]
    landmarks = find_landmarks(history)
    metrics = ("loss", "accuracy", "iou") if "val_iou" in history[0] else ("loss", "accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics, strict=True):
        ax.plot(epochs, [row[metric] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], "o-", label="validation")
        if landmarks.overfitting_epoch is not None:
            ax.axvspan(
                landmarks.overfitting_epoch - 0.5,
                epochs[-1] + 0.5,
                color=OVERFITTING_COLOR,
                alpha=0.08,
                label=f"overfitting from epoch {landmarks.overfitting_epoch}",
            )
        if landmarks.best_epoch is not None:
            ax.axvline(
                landmarks.best_epoch,
                color=BEST_COLOR,
                linestyle=":",
                linewidth=1.5,
                label=f"lowest val loss (epoch {landmarks.best_epoch})",
            )
        for previous, row in itertools.pairwise(history):
            if row["stage"] != previous["stage"]:
                ax.axvline(row["epoch"] - 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(row["epoch"] - 0.4, ax.get_ylim()[1], row["stage"], va="top", fontsize=8, color="grey")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean IoU" if metric == "iou" else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves")
    save_figure(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix") -> None:
    """Counts per (true, predicted) pair, rows = true class, with class names on both axes."""
    size = max(5.0, 0.55 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black", fontsize=9)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    save_figure(fig, path)


def plot_roc_curves(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], path: Path) -> None:
    """One-vs-rest ROC curve per class (classes absent from the split are left out), AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for index, name in enumerate(classes):
        positive = labels == index
        if 0 < positive.sum() < len(labels):
            fpr, tpr, _ = roc_curve(positive, probabilities[:, index])
            ax.plot(fpr, tpr, label=f"{name} (AUC {np.trapezoid(tpr, fpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves, one class against the rest")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def plot_reliability_diagram(
    probabilities: np.ndarray, labels: np.ndarray, path: Path, temperature: float | None = None
) -> None:
    """Accuracy per confidence bin (bars below the diagonal: over-confident), above a histogram of confidence.

    With ``temperature``, each bin after temperature scaling is a dot at (confidence, accuracy).
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = reliability_bins(probabilities, labels)
    width = bins[0].upper - bins[0].lower
    centers = np.array([(b.lower + b.upper) / 2 for b in bins])
    filled = np.array([b.count > 0 for b in bins])
    accuracy = np.array([b.accuracy for b in bins])
    top.bar(centers[filled], accuracy[filled], width=width * 0.95, color="#4c78a8", edgecolor="white", label="accuracy")
    top.plot(
        centers[filled],
        np.array([b.confidence for b in bins])[filled],
        "_",
        color=OVERFITTING_COLOR,
        markersize=14,
        markeredgewidth=2.5,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    title = f"Reliability diagram: ECE {expected_calibration_error(probabilities, labels):.3f}"
    if temperature is not None:
        calibrated = apply_temperature(probabilities, temperature)
        scaled = [b for b in reliability_bins(calibrated, labels) if b.count]
        top.plot(
            [b.confidence for b in scaled],
            [b.accuracy for b in scaled],
            "o",
            color=BEST_COLOR,
            label=f"after temperature {temperature:.2f}",
        )
        title += f", {expected_calibration_error(calibrated, labels):.3f} after scaling"
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(title)
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centers, [b.count for b in bins], width=width * 0.95, color="grey")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("images")
    save_figure(fig, path)


def plot_class_counts(classes: list[str], counts: dict[str, list[int]], path: Path) -> None:
    """Images per class, one bar per split side by side, so imbalance shows at a glance."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(classes) * len(counts) + 2), 4))
    positions = np.arange(len(classes))
    width = 0.8 / len(counts)
    for offset, (split, values) in enumerate(counts.items()):
        bars = ax.bar(positions + (offset - (len(counts) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(
        positions, classes, rotation=45 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center"
    )
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_confused_pairs(pairs: Sequence[Any], path: Path) -> None:
    """The most frequent (true -> predicted) mistakes as horizontal bars, the largest on top."""
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.4 * len(pairs) + 1)))
    names = [f"{pair.true_label} → {pair.predicted_label}" for pair in pairs]
    bars = ax.barh(names[::-1], [pair.count for pair in pairs][::-1], color=OVERFITTING_COLOR, alpha=0.7)
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("images")
    ax.set_title("Most confused classes (true → predicted)" if pairs else "No confused classes")
    save_figure(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], path: Path, columns: int, title: str = ""
) -> None:
    """(H, W, C) uint8 images in rows of ``columns``, each with a caption underneath."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        grayscale = image.shape[-1] == 1
        ax.imshow(image[..., 0] if grayscale else image, cmap="gray" if grayscale else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
