"""Pictures where a picture beats a table: training curves and the confusion matrix."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cnnkit.fileio import save_figure


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy, train vs validation; a dashed line where each new stage begins."""
    epochs = [int(row["epoch"]) for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, [row[metric] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], "o-", label="validation")
        for previous, row in itertools.pairwise(history):
            if row["stage"] != previous["stage"]:
                ax.axvline(row["epoch"] - 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(row["epoch"] - 0.4, ax.get_ylim()[1], row["stage"], va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
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
