"""From image files to the uint8 squares a model takes: for dataset decoding and for ``predict``.

Evaluation images are cropped and resized exactly as the model expects; training images keep the
full short-side square at :func:`~cnnkit.data.transforms.training_store_size` for augmentation to
crop from. Knowing that final size before decoding lets large JPEGs decode at reduced scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

from cnnkit.data.decode import DEFAULT_MAX_PIXELS, UndecodableImage, decode_file, fit_channels
from cnnkit.data.transforms import center_crop_resize, training_store_size
from cnnkit.errors import is_url
from cnnkit.models.config import Preprocessing

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterable[Result]:
    """``map`` in up to 4 threads, in order: torchvision's and Pillow's decoders release the GIL.

    Four also bounds memory: at most four images at the pixel budget are decoded at once.
    """
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(function, items)


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
