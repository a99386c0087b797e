"""Decode each image once, keep the pixels in memory, and serve batches from there.

Decoding a JPEG costs more than augmenting it, and on a laptop CPU it would otherwise be repeated
every epoch. Every split is therefore decoded once (in parallel threads: torchvision's decoders
release the GIL) into one uint8 tensor: evaluation images already cropped and resized exactly as
the model expects, training images at a slightly larger size so augmentation can move them.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cnnkit.data.builtin import BUILTIN_DATASETS
from cnnkit.data.decode import UndecodableImage, decode_file, fit_channels
from cnnkit.data.folders import DatasetSplits, ImageList, scan_folder
from cnnkit.data.transforms import center_crop_resize, training_store_size
from cnnkit.models.config import Preprocessing


class SkippedFilesWarning(UserWarning):
    """Some files in the dataset could not be decoded and were left out."""


def load_dataset(data: str | Path, val_split: float = 0.15, test_split: float = 0.15, seed: int = 0) -> DatasetSplits:
    """A built-in dataset by name (``digits``) or a class-per-folder directory."""
    if isinstance(data, str) and data in BUILTIN_DATASETS and not Path(data).exists():
        return BUILTIN_DATASETS[data](val_split, test_split, seed)
    return scan_folder(data, val_split, test_split, seed)


@dataclass
class DecodedImages:
    """A split decoded into memory: ``images`` is (N, C, S, S) uint8, aligned with ``labels``."""

    images: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    skipped: list[str]


def warn_skipped(skipped: list[str]) -> None:
    """One warning naming every file left out, so the user can fix or delete them in one go."""
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} file(s) that are not readable images: {', '.join(skipped)}",
            SkippedFilesWarning,
            stacklevel=3,
        )


def _to_tensor(array) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def decode_images(
    split: ImageList, preprocessing: Preprocessing, for_training: bool = False, warn: bool = True
) -> DecodedImages:
    """Decode, crop and resize every image of ``split`` once.

    Evaluation images get the model's exact preprocessing; training images keep the full
    short-side square at :func:`training_store_size` for augmentation to crop from. Files that
    cannot be decoded are skipped with one :class:`SkippedFilesWarning` naming them all.
    """
    size = training_store_size(preprocessing) if for_training else preprocessing.input_size
    crop_pct = 1.0 if for_training else preprocessing.crop_pct

    def prepare(index: int) -> torch.Tensor | None:
        try:
            if split.arrays is not None:
                image = _to_tensor(split.arrays[index])
            else:
                image = decode_file(split.sources[index], preprocessing.channels)
        except UndecodableImage:
            return None
        image = fit_channels(image, preprocessing.channels)
        return center_crop_resize(image, size, crop_pct, preprocessing.interpolation)

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(prepare, range(len(split))))
    kept = [i for i, image in enumerate(prepared) if image is not None]
    skipped = [split.sources[i] for i, image in enumerate(prepared) if image is None]
    if warn:
        warn_skipped(skipped)
    if kept:
        images = torch.stack([prepared[i] for i in kept])
    else:
        images = torch.empty(0, preprocessing.channels, size, size, dtype=torch.uint8)
    labels = torch.tensor([split.labels[i] for i in kept], dtype=torch.long)
    return DecodedImages(images, labels, [split.sources[i] for i in kept], skipped)


class TensorImageDataset(Dataset):
    """Serves (transformed image, label) pairs from a :class:`DecodedImages`."""

    def __init__(self, decoded: DecodedImages, transform) -> None:
        self.decoded = decoded
        self.transform = transform

    def __len__(self) -> int:
        return len(self.decoded.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.decoded.images[index]), self.decoded.labels[index]
