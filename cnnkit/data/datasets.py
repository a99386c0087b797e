"""Decode each image once, keep the pixels (in memory or a memory-mapped file), serve batches from there.

Decoding a JPEG costs more than augmenting it, and on a laptop CPU it would otherwise be repeated
every epoch. Every split is therefore decoded once (in parallel threads: torchvision's decoders
release the GIL) into one uint8 tensor: evaluation images already cropped and resized exactly as
the model expects, training images at a slightly larger size so augmentation can move them.
:func:`decode_splits` decodes all three splits at once, so that every file left out, at scan or
decode time and in any split, is named in one warning and one list.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnkit.cache import cache_key, default_cache_dir
from cnnkit.crashpoints import crash_point
from cnnkit.data.boxes import BOX_SKIP
from cnnkit.data.builtin import BUILTIN_DATASETS
from cnnkit.data.decode import DEFAULT_MAX_PIXELS, UndecodableImage
from cnnkit.data.folders import DatasetSplits, ImageList, ScanOptions, scan_folder
from cnnkit.data.prepare import map_indices, prepare_decoded, prepare_file, stored_geometry
from cnnkit.data.shards import ShardedImageList, ShardImages, decode_shards, is_shard_folder, shard_dataset
from cnnkit.errors import CnnkitError
from cnnkit.fileio import atomic_path, read_json, write_json
from cnnkit.models.config import Preprocessing
from cnnkit.progress import tracked


class SkippedFilesWarning(UserWarning):
    """Some files in the dataset could not be decoded and were left out."""


def load_dataset(
    data: str | Path, val_split: float = 0.15, test_split: float = 0.15, seed: int = 0, **options: Unpack[ScanOptions]
) -> DatasetSplits:
    """A built-in dataset by name (``digits``) or a class-per-folder directory.

    ``options`` are :func:`scan_folder`'s (``max_pixels``, ``drop_empty_classes``); built-in
    datasets have no files to check and ignore them.
    """
    if isinstance(data, str) and data in BUILTIN_DATASETS and not Path(data).exists():
        return BUILTIN_DATASETS[data](val_split, test_split, seed)
    if is_shard_folder(data):  # split when it was sharded
        return shard_dataset(data)
    return scan_folder(data, val_split, test_split, seed, **options)


@dataclass
class DecodedImages:
    """A decoded split: ``images`` is (N, C, S, S) uint8 (a tensor, or a :class:`MemmapImages` /
    :class:`LazyImages` that index the same way), aligned with ``labels`` and ``sources``.

    ``skipped`` lists the split's files left out, at scan or decode time; ``reasons`` says why.
    """

    images: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    skipped: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def warn_skipped(skipped: Sequence[str] | Mapping[str, str]) -> None:
    """One warning naming every file left out (with the reason, given a mapping), to fix or delete in one go."""
    if not skipped:
        return
    reasons = skipped if isinstance(skipped, Mapping) else dict.fromkeys(skipped, "")
    unreadable = [f"{path} ({why})" if why else path for path, why in reasons.items() if not why.startswith(BOX_SKIP)]
    boxless = [f"{path} ({why.removeprefix(BOX_SKIP)})" for path, why in reasons.items() if why.startswith(BOX_SKIP)]
    parts = [f"{len(unreadable)} file(s) that are not readable images: {', '.join(unreadable)}"] if unreadable else []
    if boxless:
        parts.append(f"{len(boxless)} image(s) without one usable box: {', '.join(boxless)}")
    warnings.warn(f"skipped {'; and '.join(parts)}", SkippedFilesWarning, stacklevel=3)


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
        rows = self.kept[np.asarray(index)] if isinstance(index, torch.Tensor) else self.kept[index]
        return torch.from_numpy(np.array(self.array[rows]))


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
        if isinstance(index, torch.Tensor) and index.ndim == 1:  # a batch
            return torch.stack([self.prepare(self.kept[i]) for i in index.tolist()])
        return self.prepare(self.kept[int(index)])


def decode_images(
    split: ImageList,
    preprocessing: Preprocessing,
    for_training: bool = False,
    warn: bool = True,
    cache: str = "ram",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: str | None = None,
) -> DecodedImages:
    """Decode, crop and resize every image of ``split`` once; ``progress`` names the step shown while it runs.

    Evaluation images get the model's exact preprocessing; training images keep the full
    short-side square at :func:`training_store_size` for augmentation to crop from. Files that
    cannot be decoded, or claim more than ``max_pixels``, are skipped; with ``warn``, one
    :class:`SkippedFilesWarning` names them and the ones the scan left out (``split.skipped``).

    ``cache`` says where the pixels live: ``ram`` (one uint8 tensor), ``disk`` (a memory-mapped
    file under the cache folder, reused by later runs on the same files and settings) or ``off``
    (decoded again on every access; the files are still read once to find unreadable ones).
    """
    if cache not in IMAGE_CACHES:
        raise CnnkitError(f"--image-cache must be one of {', '.join(IMAGE_CACHES)}, not {cache!r}")
    size, crop_pct = stored_geometry(preprocessing, for_training)
    shape = (preprocessing.channels, size, size)
    if isinstance(split, ShardedImageList):
        return _from_shards(split, preprocessing, for_training, max_pixels, shape, progress)

    def prepare(index: int) -> torch.Tensor | str:
        """The stored image, or why the file cannot give one."""
        try:
            if split.arrays is not None:
                return prepare_decoded(_to_tensor(split.arrays[index]), preprocessing, for_training)
            return prepare_file(split.sources[index], preprocessing, for_training, max_pixels)
        except UndecodableImage as exc:
            return str(exc)

    def each(function: Callable[[int], Any]) -> Iterable[Any]:
        results = map_indices(function, len(split))
        return results if progress is None else tracked(results, len(split), progress, unit="images")

    if cache == "disk":
        settings = {"kind": "images", "version": 2, "shape": shape, "crop_pct": crop_pct, "max_pixels": max_pixels,
                    "preprocessing": preprocessing.to_dict()}  # fmt: skip
        images, kept, failures = _decode_to_disk(split, settings, each(prepare))
    elif cache == "off":  # each file is decoded once to find the unreadable ones, and its pixels let go
        reasons = list(each(lambda i: _failure(prepare(i))))
        failures = {split.sources[i]: why for i, why in enumerate(reasons) if why is not None}
        kept = [i for i, why in enumerate(reasons) if why is None]
        images = LazyImages(prepare, kept, shape)
    else:
        prepared = list(each(prepare))
        failures = {split.sources[i]: why for i, why in enumerate(prepared) if isinstance(why, str)}
        kept = [i for i, image in enumerate(prepared) if not isinstance(image, str)]
        images = torch.stack([prepared[i] for i in kept]) if kept else torch.empty(0, *shape, dtype=torch.uint8)
    reasons = {**split.skipped, **failures}
    if warn:
        warn_skipped(reasons)
    labels = torch.tensor([split.labels[i] for i in kept], dtype=torch.long)
    return DecodedImages(images, labels, [split.sources[i] for i in kept], list(reasons), reasons)


def _failure(prepared: torch.Tensor | str) -> str | None:
    return prepared if isinstance(prepared, str) else None


def _from_shards(
    split: ShardedImageList, preprocessing: Preprocessing, for_training: bool, max_pixels: int, shape: tuple,
    progress: str | None,
) -> DecodedImages:  # fmt: skip
    """A split of a shard folder: streamed each epoch (train), or decoded once into memory; every sample was
    checked when the shards were written."""
    labels = torch.tensor(split.labels, dtype=torch.long)
    if split.stream:
        images = ShardImages(split, preprocessing, for_training, max_pixels, shape)
    else:
        images = decode_shards(split, preprocessing, for_training, max_pixels, progress)
    return DecodedImages(images, labels, list(split.sources), [])


def _decode_to_disk(
    split: ImageList, settings: dict, prepared: Iterable[torch.Tensor | str]
) -> tuple[MemmapImages, list[int], dict[str, str]]:
    """Fill (or reuse) a memory-mapped uint8 file holding every image of the split.

    ``prepared`` is consumed only when the file is not there yet. The index beside it keeps which
    images are in it and why the others are not.
    """
    key = cache_key(settings, split.sources)
    path, index_path = default_cache_dir() / f"images-{key}.npy", default_cache_dir() / f"images-{key}.json"
    if not (path.is_file() and index_path.is_file()):
        failures: dict[str, str] = {}
        with atomic_path(path) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(split), *settings["shape"]))
            kept = []
            for i, image in enumerate(prepared):
                if isinstance(image, str):
                    failures[split.sources[i]] = image
                else:
                    array[i] = image.numpy()
                    kept.append(i)
            array.flush()
            del array
        write_json(index_path, {"kept": kept, "failures": failures})
    index = read_json(index_path)
    return MemmapImages(np.load(path, mmap_mode="r"), index["kept"]), index["kept"], index["failures"]


@dataclass
class DecodedSplits:
    """Every split of a dataset decoded, and every file left out of any of them."""

    train: DecodedImages
    val: DecodedImages
    test: DecodedImages | None

    @property
    def skipped(self) -> dict[str, str]:
        """Path -> reason for every file left out of train, val or test, at scan or decode time."""
        splits = [split for split in (self.train, self.val, self.test) if split is not None]
        return {path: why for split in splits for path, why in split.reasons.items()}


def decode_splits(
    dataset: DatasetSplits,
    preprocessing: Preprocessing,
    *,
    for_training: bool = False,
    cache: str = "ram",
    warn: bool = True,
    progress: bool = False,
) -> DecodedSplits:
    """Decode train (as training images when ``for_training``), val and test, at the dataset's pixel budget.

    One :class:`SkippedFilesWarning` names every file left out of any split. A class left with
    no readable training image, or a split with no image, is a :class:`CnnkitError` naming it.
    """
    common = dict(cache=cache, warn=False, max_pixels=dataset.max_pixels)

    def step(split: str) -> str | None:
        return f"decoding {split}" if progress else None

    train = decode_images(dataset.train, preprocessing, for_training=for_training, progress=step("train"), **common)
    crash_point("decoded")
    decoded = DecodedSplits(
        train,
        decode_images(dataset.val, preprocessing, progress=step("val"), **common),
        None if dataset.test is None else decode_images(dataset.test, preprocessing, progress=step("test"), **common),
    )
    if warn:
        warn_skipped(decoded.skipped)
    _require_images(dataset, decoded)
    return decoded


def _require_images(dataset: DatasetSplits, decoded: DecodedSplits) -> None:
    """Fail before training rather than train a class, or score a split, that has no image."""
    for name in ("train", "val"):
        if len(getattr(decoded, name).labels) == 0:
            raise CnnkitError(f"no readable images in the {name} split of {dataset.name}; see the skipped files")
    counts = torch.bincount(decoded.train.labels, minlength=len(dataset.classes))
    missing = [
        _class_folder(dataset.train, index, dataset.root) for index in (counts == 0).nonzero().flatten().tolist()
    ]
    if missing:
        names = ", ".join(f"{dataset.classes[index]!r} ({folder})" for index, folder in missing)
        raise CnnkitError(
            f"no training image of class {names} could be decoded; fix or delete those files, "
            "or drop such classes (--drop-empty-classes)"
        )


def _class_folder(split: ImageList, label: int, default: str) -> tuple[int, str]:
    """(label, the folder holding the class's files in ``split``), for error messages."""
    folders = [os.path.dirname(path) for path, of in zip(split.sources, split.labels, strict=True) if of == label]
    return label, os.path.commonpath(folders) if folders else default


class TensorImageDataset(Dataset):
    """Serves (transformed image, label) pairs from a :class:`DecodedImages`."""

    def __init__(self, decoded: DecodedImages, transform) -> None:
        self.decoded = decoded
        self.transform = transform

    def __len__(self) -> int:
        return len(self.decoded.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.decoded.images[index]), self.decoded.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A whole batch through the transform at once (the DataLoader asks for batches this way): one
        vectorized augmentation instead of one per image, which cost more than LeNet-5's training step."""
        images = self.transform(self.decoded.images[torch.as_tensor(indices, dtype=torch.long)])
        return list(zip(images.unbind(), self.decoded.labels[indices].unbind(), strict=True))
