"""From image files to the uint8 squares a model takes: for dataset decoding and for ``predict``.

Evaluation images are cropped and resized exactly as the model expects; training images keep the
full short-side square at :func:`~cnnkit.data.transforms.training_store_size` for augmentation to
crop from. Knowing that final size before decoding lets large JPEGs decode at reduced scale.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from cnnkit.data.decode import DEFAULT_MAX_PIXELS, UndecodableImage, decode_file, fit_channels
from cnnkit.data.transforms import center_crop_resize, training_store_size
from cnnkit.errors import is_url
from cnnkit.models.config import Preprocessing

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterable[Result]:
    """``map`` in :func:`_decode_workers` threads, in order: torchvision's and Pillow's decoders release the GIL."""
    with ThreadPoolExecutor(_decode_workers()) as pool:
        yield from pool.map(function, items)


PROCESS_MAP_MIN_ITEMS = 1000
"""Fewer items than this are decoded in threads: starting worker processes costs more than it saves."""


def map_indices(function: Callable[[int], Result], count: int) -> Iterator[Result]:
    """``function(i)`` for ``i`` in ``range(count)``, in order, in forked worker processes when there are many.

    Decoding a small image is mostly Python that holds the GIL, so threads run it slower than one
    thread does: 28 px MNIST PNGs took 670 us each in 4 threads, 300 in one and 177 in 2 processes
    (2 cores). The workers are forked (Linux only), so ``function`` may be a closure; tensors come
    back pickled as arrays rather than through shared-memory handles, one per image.
    """
    workers = _decode_workers()
    forkable = sys.platform == "linux" and not multiprocessing.current_process().daemon
    if count < PROCESS_MAP_MIN_ITEMS or workers < 2 or not forkable:
        yield from parallel_map(function, range(count))
        return
    from torch.utils.data import DataLoader

    calls = _IndexedCalls(function, count)
    loader = DataLoader(calls, 64, num_workers=workers, collate_fn=_as_arrays, multiprocessing_context="fork")
    for batch in loader:
        yield from (torch.from_numpy(item) if isinstance(item, np.ndarray) else item for item in batch)


def _decode_workers() -> int:
    """Up to 4 (that bounds memory: at most four images at the pixel budget decode at once), one per usable core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


class _IndexedCalls:
    """A map-style dataset whose item ``i`` is ``function(i)``, for :func:`map_indices`' DataLoader."""

    def __init__(self, function: Callable[[int], object], count: int) -> None:
        self.function, self.count = function, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> object:
        return self.function(index)


def _as_arrays(batch: list) -> list:
    return [item.numpy() if isinstance(item, torch.Tensor) else item for item in batch]


def stored_geometry(preprocessing: Preprocessing, for_training: bool = False) -> tuple[int, float]:
    """(side, crop_pct) of the stored square: the model's input, or the larger training square."""
    if for_training:
        return training_store_size(preprocessing), 1.0
    return preprocessing.input_size, preprocessing.crop_pct


def prepare_decoded(image: torch.Tensor, preprocessing: Preprocessing, for_training: bool = False) -> torch.Tensor:
    """A decoded uint8 (C, H, W) image -> the stored square, with the model's channels."""
    size, crop_pct = stored_geometry(preprocessing, for_training)
    image = fit_channels(image, preprocessing.channels)
    return center_crop_resize(image, size, crop_pct, preprocessing.interpolation, preprocessing.resize == "squash")


def prepare_file(
    path: str | Path, preprocessing: Preprocessing, for_training: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Decode and prepare one file; raises :class:`~cnnkit.data.decode.UndecodableImage`.

    A JPEG at least four times the side the crop needs is decoded at reduced scale; the crop of
    any smaller image is exactly that of the full decode.
    """
    size, crop_pct = stored_geometry(preprocessing, for_training)
    image = decode_file(path, preprocessing.channels, max_pixels, min_side=math.ceil(size / crop_pct))
    return prepare_decoded(image, preprocessing, for_training)


def prepare_images(
    paths: Sequence[str | Path], preprocessing: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[torch.Tensor | str]:
    """Per path, the prepared uint8 input the model takes, or why there is none (one short line).

    For ``predict``: every readable image gets an answer even when others in the call are missing,
    broken or over the pixel budget.
    """

    def attempt(path: str | Path) -> torch.Tensor | str:
        if is_url(path):
            return "is a URL: URLs are not downloaded; download the image first and give its local path"
        if not Path(path).exists():
            return "does not exist"
        if not Path(path).is_file():
            return "is not a file"
        try:
            return prepare_file(path, preprocessing, max_pixels=max_pixels)
        except UndecodableImage as exc:
            return f"not a readable image: {exc}"

    return list(parallel_map(attempt, paths))
