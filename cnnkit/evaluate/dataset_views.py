"""Look at the data before blaming the model: class counts, sample images, and what augmentation does to them.

Counts come first because of the notes' warning about imbalanced classes: with 99% of images in one
class, a model that always answers that class is 99% accurate and useless. The sample grid shows the
images as the model sees them (cropped and resized); the augmented grid shows them as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.data.datasets import decode_images
from cnnkit.data.folders import DatasetSplits, ImageList
from cnnkit.data.transforms import train_transform
from cnnkit.evaluate.plots import plot_class_counts, plot_image_grid
from cnnkit.fileio import write_json
from cnnkit.models.config import Preprocessing

IMBALANCE_WARNING_RATIO = 3.0
AUGMENTED_IMAGES = 4
AUGMENTED_VARIANTS = 5


@dataclass
class DatasetSummary:
    """Per-class image counts of each split, and how uneven the training classes are."""

    name: str
    classes: list[str]
    layout: str
    counts: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)

    @property
    def imbalance(self) -> float:
        """Largest over smallest training class (1.0 is perfectly balanced; inf when a class is empty)."""
        train = self.counts["train"]
        return max(train) / min(train) if min(train) else float("inf")

    @property
    def is_imbalanced(self) -> bool:
        return self.imbalance >= IMBALANCE_WARNING_RATIO

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "imbalance": self.imbalance, "is_imbalanced": self.is_imbalanced}


def summarize_dataset(dataset: DatasetSplits) -> DatasetSummary:
    """Count the images of every class in every split the dataset has."""
    counts = {
        name: images.class_counts(len(dataset.classes))
        for name in ("train", "val", "test")
        if (images := getattr(dataset, name)) is not None
    }
    return DatasetSummary(dataset.name, dataset.classes, dataset.layout, counts, list(dataset.notes))


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) uint8 tensor as the (H, W, C) array that plotting and image encoders expect."""
    return image.permute(1, 2, 0).numpy()


def crops_of(images: ImageList, sources: list[str], preprocessing: Preprocessing) -> dict[str, torch.Tensor]:
    """The model's view (cropped, resized uint8) of the listed images of a split, keyed by source."""
    position = {source: i for i, source in enumerate(images.sources)}
    decoded = decode_images(images.subset([position[s] for s in sources]), preprocessing, warn=False)
    return dict(zip(decoded.sources, decoded.images, strict=True))


def pick_per_class(images: ImageList, num_classes: int, per_class: int, seed: int = 0) -> list[list[int]]:
    """Up to ``per_class`` random image positions for each class, the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(images.labels)
    picks = []
    for index in range(num_classes):
        members = np.flatnonzero(labels == index)
        picks.append(sorted(rng.choice(members, min(per_class, len(members)), replace=False).tolist()))
    return picks


def denormalize(batch: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Undo the mean/std normalisation of float images so they can be shown: back to uint8."""
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    return ((batch * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)


def augmented_variants(
    images: ImageList, preprocessing: Preprocessing, preset: str, variants: int = AUGMENTED_VARIANTS, seed: int = 0
) -> list[list[torch.Tensor]]:
    """For each image: the evaluation crop, then ``variants`` random augmentations as training produces them."""
    transform = train_transform(preprocessing, preset)
    stored = decode_images(images, preprocessing, for_training=True, warn=False)
    plain = decode_images(images, preprocessing, warn=False)
    rows = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for original, image in zip(plain.images, stored.images, strict=True):
            rows.append([original] + [denormalize(transform(image), preprocessing) for _ in range(variants)])
    return rows


@dataclass
class DatasetViews:
    """The dataset summary and the figures saved for it."""

    summary: DatasetSummary
    files: dict[str, Path]


def save_dataset_views(
    dataset: DatasetSplits, preprocessing: Preprocessing, augment: str, run_dir: Path, per_class: int = 6
) -> DatasetViews:
    """Write ``dataset.json``, ``class_counts.png``, ``samples.png`` and ``augmented.png`` into the run."""
    summary = summarize_dataset(dataset)
    files = {name: run_dir / f"{name}.png" for name in ("class_counts", "samples", "augmented")}
    write_json(run_dir / "dataset.json", summary.to_dict())
    plot_class_counts(dataset.classes, summary.counts, files["class_counts"])

    picks = pick_per_class(dataset.train, len(dataset.classes), per_class)
    chosen = dataset.train.subset([i for row in picks for i in row])
    samples = decode_images(chosen, preprocessing, warn=False)
    plot_image_grid(
        [to_hwc(image) for image in samples.images],
        [dataset.classes[label] for label in samples.labels.tolist()],
        files["samples"],
        columns=per_class,
        title=f"Training images as the model sees them ({preprocessing.input_size} px)",
    )

    first_of_each = dataset.train.subset([row[0] for row in picks if row][:AUGMENTED_IMAGES])
    rows = augmented_variants(first_of_each, preprocessing, augment, AUGMENTED_VARIANTS)
    plot_image_grid(
        [to_hwc(image) for row in rows for image in row],
        (["original"] + ["augmented"] * AUGMENTED_VARIANTS) * len(rows),
        files["augmented"],
        columns=1 + AUGMENTED_VARIANTS,
        title=f"Augmentation '{augment}' as training applies it",
    )
    return DatasetViews(summary, files)
