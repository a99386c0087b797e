"""Decode each image once, keep the pixels (in memory or a memory-mapped file), serve batches from there.

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

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnkit.cache import cache_key, default_cache_dir
from cnnkit.data.builtin import BUILTIN_DATASETS
from cnnkit.data.decode import UndecodableImage, decode_file, fit_channels
from cnnkit.data.folders import DatasetSplits, ImageList, scan_folder
from cnnkit.data.transforms import center_crop_resize, training_store_size
from cnnkit.errors import CnnkitError
from cnnkit.fileio import atomic_path, read_json, write_json
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
    """A decoded split: ``images`` is (N, C, S, S) uint8 (a tensor, or a :class:`MemmapImages` /
    :class:`LazyImages` that index the same way), aligned with ``labels`` and ``sources``."""

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


IMAGE_CACHES = ("ram", "disk", "off")


class MemmapImages:
    """Decoded images in a memory-mapped file; only the pages a batch touches are read."""

    def __init__(self, array: np.ndarray, kept: list[int]) -> None:
        self.array = array
        self.kept = np.asarray(kept, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.kept), *self.array.shape[1:])

    def __getitem__(self, index):
        return torch.from_numpy(np.array(self.array[self.kept[index]]))


class LazyImages:
    """No cache: every access decodes the file again (the baseline the caches are measured against)."""

    def __init__(self, prepare, kept: list[int], shape: tuple[int, ...]) -> None:
        self.prepare = prepare
        self.kept = kept
        self._shape = shape

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.kept), *self._shape)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return torch.stack([self.prepare(i) for i in self.kept[index]])
        return self.prepare(self.kept[index])


def decode_images(
    split: ImageList,
    preprocessing: Preprocessing,
    for_training: bool = False,
    warn: bool = True,
    cache: str = "ram",
) -> DecodedImages:
    """Decode, crop and resize every image of ``split`` once.

    Evaluation images get the model's exact preprocessing; training images keep the full
    short-side square at :func:`training_store_size` for augmentation to crop from. Files that
    cannot be decoded are skipped with one :class:`SkippedFilesWarning` naming them all.

    ``cache`` says where the pixels live: ``ram`` (one uint8 tensor), ``disk`` (a memory-mapped
    file under the cache folder, reused by later runs on the same files and settings) or ``off``
    (decoded again on every access; the files are still read once to find unreadable ones).
    """
    if cache not in IMAGE_CACHES:
        raise CnnkitError(f"--image-cache must be one of {', '.join(IMAGE_CACHES)}, not {cache!r}")
    size = training_store_size(preprocessing) if for_training else preprocessing.input_size
    crop_pct = 1.0 if for_training else preprocessing.crop_pct
    shape = (preprocessing.channels, size, size)

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

    if cache == "disk":
        images, kept = _decode_to_disk(split, preprocessing, shape, crop_pct, prepare)
    else:
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            prepared = list(pool.map(prepare, range(len(split))))
        kept = [i for i, image in enumerate(prepared) if image is not None]
        if cache == "off":
            images = LazyImages(prepare, kept, shape)
        else:
            images = torch.stack([prepared[i] for i in kept]) if kept else torch.empty(0, *shape, dtype=torch.uint8)
    skipped = [split.sources[i] for i in sorted(set(range(len(split))) - set(kept))]
    if warn:
        warn_skipped(skipped)
    labels = torch.tensor([split.labels[i] for i in kept], dtype=torch.long)
    return DecodedImages(images, labels, [split.sources[i] for i in kept], skipped)


def _decode_to_disk(split: ImageList, preprocessing: Preprocessing, shape, crop_pct: float, prepare):
    """Fill (or reuse) a memory-mapped uint8 file holding every image of the split."""
    settings = {"kind": "images", "shape": shape, "crop_pct": crop_pct, "preprocessing": preprocessing.to_dict()}
    key = cache_key(settings, split.sources)
    path, index_path = default_cache_dir() / f"images-{key}.npy", default_cache_dir() / f"images-{key}.json"
    if not (path.is_file() and index_path.is_file()):
        with atomic_path(path) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(split), *shape))
            kept = []
            workers = max(1, min(4, os.cpu_count() or 1))
            with ThreadPoolExecutor(workers) as pool:
                for i, image in enumerate(pool.map(prepare, range(len(split)))):
                    if image is not None:
                        array[i] = image.numpy()
                        kept.append(i)
            array.flush()
            del array
        write_json(index_path, kept)
    kept = read_json(index_path)
    return MemmapImages(np.load(path, mmap_mode="r"), kept), kept


class TensorImageDataset(Dataset):
    """Serves (transformed image, label) pairs from a :class:`DecodedImages`."""

    def __init__(self, decoded: DecodedImages, transform) -> None:
        self.decoded = decoded
        self.transform = transform

    def __len__(self) -> int:
        return len(self.decoded.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.decoded.images[index]), self.decoded.labels[index]
