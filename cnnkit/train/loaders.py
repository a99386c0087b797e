"""Batches for training: shuffled or class-balanced, from decoded images or from cached features.

Each loader's random order comes from its own seeded generators, which the run's checkpoint saves,
so a resumed epoch draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from cnnkit.config import Sampler
from cnnkit.data.datasets import DecodedImages, TensorImageDataset
from cnnkit.data.shards import ShardImages
from cnnkit.errors import CnnkitError
from cnnkit.runtime import inference_batch_size


@dataclass
class Loaders:
    """A stage's training and validation batches, and the generators behind their randomness."""

    train: DataLoader
    val: DataLoader
    generators: list[torch.Generator] = field(default_factory=list)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, N / (C * n_c): a class with half the images counts twice as much."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise CnnkitError(f"--class-weight auto needs training images of every class; none for class index {missing}")
    return len(labels) / (num_classes * counts)


def views_per_class(labels: torch.Tensor, num_classes: int, views: int, rebalanced: bool) -> torch.Tensor:
    """How many augmented views to cache per training image of each class: ``views``, times k for a
    class that counts k times more per image than the largest class when ``rebalanced`` (by the
    balanced sampler or by inverse-frequency class weights).

    Without the extra views, a small class's few cached inputs would be replayed (or weighted up)
    until the model memorized them. Each class then costs about as much to cache as the largest.
    """
    if not rebalanced:
        return torch.full((num_classes,), views, dtype=torch.long)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    return views * (counts.max() / counts).round().long()


def train_loader(
    dataset: Dataset, labels: torch.Tensor, batch_size: int, sampler: Sampler, seed: int
) -> tuple[DataLoader, torch.Generator]:
    """Shuffled batches, or with ``balanced`` each class drawn equally often (oversampling small ones)."""
    generator = torch.Generator().manual_seed(seed)
    if sampler == Sampler.balanced:
        counts = torch.bincount(labels).float()
        weights = (1.0 / counts)[labels]
        balanced = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
        return DataLoader(dataset, batch_size=batch_size, sampler=balanced), generator
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator), generator


def image_loaders(
    train_images: DecodedImages,
    val_images: DecodedImages,
    train_tf,
    val_tf,
    *,
    batch_size: int,
    sampler: Sampler,
    seed: int,
    device: torch.device,
) -> Loaders:
    """Batches of decoded images, augmented by ``train_tf`` for training; streamed from shards if they are there."""
    if isinstance(train_images.images, ShardImages):
        if sampler == Sampler.balanced:
            raise CnnkitError(
                "--sampler balanced needs random access to the images; shards stream: use --class-weight auto"
            )
        stream = train_images.images.stream(train_tf, seed)
        train, generator = DataLoader(stream, batch_size=batch_size), stream.generator
    else:
        train, generator = train_loader(
            TensorImageDataset(train_images, train_tf), train_images.labels, batch_size, sampler, seed
        )
    val = DataLoader(TensorImageDataset(val_images, val_tf), batch_size=inference_batch_size(device))
    return Loaders(train, val, [generator])
