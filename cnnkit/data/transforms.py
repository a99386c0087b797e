"""Preprocessing and augmentation, built from torchvision transforms v2.

Images are decoded once and kept as uint8 tensors (see :mod:`cnnkit.data.datasets`): evaluation
images already at the model's input size, training images a little larger so augmentation has
room to move. The transforms here turn those uint8 tensors into normalized float batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from cnnkit.errors import CnnkitError
from cnnkit.models.config import Preprocessing

AUGMENT_PRESETS = ("auto", "standard", "light", "none")

_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def interpolation_mode(name: str) -> InterpolationMode:
    return _INTERPOLATION[name]


def crop_box(height: int, width: int, crop_pct: float) -> tuple[int, int, int]:
    """(top, left, side) of the centre square evaluation keeps: ``crop_pct`` of the short side."""
    side = max(1, int(crop_pct * min(height, width)))
    return (height - side + 1) // 2, (width - side + 1) // 2, side


def center_crop_resize(image: torch.Tensor, size: int, crop_pct: float, interpolation: str) -> torch.Tensor:
    """Crop ``crop_pct`` of the short side at the centre (TF-style offsets), then resize to ``size``.

    The offset ``(h - c + 1) // 2`` matches the reference TensorFlow evaluation code; torchvision's
    CenterCrop rounds the other way, which measurably changes pretrained predictions.
    """
    top, left, crop = crop_box(*image.shape[-2:], crop_pct)
    image = image[..., top : top + crop, left : left + crop]
    return v2.functional.resize(image, [size, size], interpolation=interpolation_mode(interpolation), antialias=True)


def training_store_size(preprocessing: Preprocessing) -> int:
    """Side of the stored training images: the full short-side square that evaluation crops from."""
    return math.ceil(preprocessing.input_size / preprocessing.crop_pct)


class RandomChannelShift(nn.Module):
    """Add one random offset per colour channel (Keras' ``channel_shift_range``) to a [0, 1] image."""

    def __init__(self, max_shift: float) -> None:
        super().__init__()
        self.max_shift = max_shift

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shift = (torch.rand(image.shape[-3], 1, 1) * 2 - 1) * self.max_shift
        return (image + shift).clamp_(0.0, 1.0)


def resolve_augment(preset: str, preprocessing: Preprocessing) -> str:
    """``auto`` means ``standard`` for colour images and ``light`` (no flips) for grayscale ones."""
    if preset not in AUGMENT_PRESETS:
        raise CnnkitError(f"--augment must be one of {', '.join(AUGMENT_PRESETS)}, not {preset!r}")
    if preset == "auto":
        return "standard" if preprocessing.channels == 3 else "light"
    return preset


def _affine_with_nearest_fill(
    store_size: int, degrees: float, shift: float, shear: float, zoom: float
) -> list[nn.Module]:
    """Keras' affine augmentation with ``fill_mode='nearest'``.

    RandomAffine only fills with a constant, so the image is first padded by replicating its edge
    pixels and cropped back afterwards: the uncovered corners show stretched edges, as in Keras.
    """
    pad = store_size // 2
    padded = store_size + 2 * pad
    return [
        v2.Pad(pad, padding_mode="edge"),
        v2.RandomAffine(
            degrees=degrees,
            translate=(shift * store_size / padded, shift * store_size / padded),
            scale=(1 - zoom, 1 + zoom),
            shear=shear,
            interpolation=InterpolationMode.BILINEAR,
        ),
        v2.CenterCrop(store_size),
    ]


def train_transform(preprocessing: Preprocessing, preset: str) -> v2.Compose:
    """uint8 training image (at :func:`training_store_size`) -> augmented, normalized float tensor.

    ``standard`` follows the notes' ImageDataGenerator: rotation 40 degrees, width/height shift
    0.2, shear 0.2 rad (about 11.5 degrees), zoom 0.2, channel shift, horizontal flip, nearest fill.
    ``light`` suits digits and text: rotation 10, shift 0.1, zoom 0.1, no flip, no colour change.
    """
    store = training_store_size(preprocessing)
    steps: list[nn.Module] = []
    if preset == "standard":
        steps += _affine_with_nearest_fill(store, degrees=40, shift=0.2, shear=math.degrees(0.2), zoom=0.2)
        steps.append(v2.RandomHorizontalFlip())
    elif preset == "light":
        steps += _affine_with_nearest_fill(store, degrees=10, shift=0.1, shear=0.0, zoom=0.1)
    steps += [v2.CenterCrop(preprocessing.input_size), v2.ToDtype(torch.float32, scale=True)]
    if preset == "standard" and preprocessing.channels == 3:
        steps.append(RandomChannelShift(0.1))
    steps.append(v2.Normalize(list(preprocessing.mean), list(preprocessing.std)))
    return v2.Compose(steps)


def eval_transform(preprocessing: Preprocessing) -> v2.Compose:
    """uint8 image already cropped and resized -> normalized float tensor."""
    return v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(preprocessing.mean), list(preprocessing.std))]
    )
