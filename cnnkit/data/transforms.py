"""Preprocessing and augmentation, built from torchvision transforms v2.

Images are decoded once and kept as uint8 tensors (see :mod:`cnnkit.data.datasets`): evaluation
images already at the model's input size, training images a little larger so augmentation has
room to move. The transforms here turn those uint8 tensors into normalized float batches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from cnnkit.errors import CnnkitError
from cnnkit.models.config import Preprocessing

AUGMENT_PRESETS = ("auto", "standard", "light", "shift_flip", "none")

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


def center_crop_resize(
    image: torch.Tensor, size: int, crop_pct: float, interpolation: str, squash: bool = False
) -> torch.Tensor:
    """Crop ``crop_pct`` of the short side at the centre (TF-style offsets), then resize to ``size``.

    ``squash`` resizes the whole image instead (localization: boxes stay whole and normalized).

    The offset ``(h - c + 1) // 2`` matches the reference TensorFlow evaluation code; torchvision's
    CenterCrop rounds the other way, which measurably changes pretrained predictions.
    """
    if not squash:
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

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}"

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shift = (torch.rand(*image.shape[:-2], 1, 1) * 2 - 1) * self.max_shift  # per image and channel
        return (image + shift).clamp_(0.0, 1.0)


def resolve_augment(preset: str, preprocessing: Preprocessing) -> str:
    """``auto`` means ``standard`` for colour images and ``light`` (no flips) for grayscale ones."""
    if preset not in AUGMENT_PRESETS:
        raise CnnkitError(f"--augment must be one of {', '.join(AUGMENT_PRESETS)}, not {preset!r}")
    if preset == "auto":
        return "standard" if preprocessing.channels == 3 else "light"
    return preset


def affine_crop_thetas(
    store_size: int,
    output_size: int,
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices (``align_corners=False``) from the output to the stored image.

    One row per image: ``angle``, ``scale``, ``shear`` and ``flip`` have shape (N,), ``translate`` (N, 2).
    The geometry is torchvision's ``affine`` about the stored image's centre (positive ``angle``
    turns the content clockwise, ``translate`` in pixels, ``shear`` along x in degrees), then the
    horizontal flip, then the centre ``output_size`` crop at an integer offset, so that identity
    parameters copy the crop's pixels exactly instead of blurring them. Float64 throughout, so that
    the identity (256 -> 224, say) hits pixel centres exactly, not 1e-5 pixel off.
    """
    rot, sx = torch.deg2rad(angle.double()), torch.deg2rad(shear.double())
    cos, sin, tan = rot.cos(), rot.sin(), sx.tan()
    # torchvision's rotate-scale-shear matrix [[cos, -cos tan - sin], [sin, -sin tan + cos]] (determinant 1)
    # maps stored pixels to output pixels; sampling needs its inverse, (1 / scale) times the adjugate.
    row0 = torch.stack([-sin * tan + cos, cos * tan + sin], dim=-1)
    row1 = torch.stack([-sin, cos], dim=-1)
    inverse = torch.stack([row0, row1], dim=-2) / scale.double()[:, None, None]
    # The crop's centre relative to the stored image's centre: 0, or half a pixel for an odd margin.
    centre = (store_size - output_size + 1) // 2 + (output_size - store_size) / 2
    shift = centre - translate.double()
    # stored = inverse @ (output - translate) about the centres, rescaled to affine_grid's [-1, 1] units.
    offset = (inverse @ shift[:, :, None]) * (2 / store_size)
    theta = torch.cat([inverse * (output_size / store_size), offset], dim=-1)
    theta[..., 0] = torch.where(flip[:, None].bool(), -theta[..., 0], theta[..., 0])
    return theta


def affine_crop_theta(
    store_size: int,
    output_size: int,
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    shear: float = 0.0,
    flip: bool = False,
) -> torch.Tensor:
    """The 2x3 matrix of :func:`affine_crop_thetas` for one image."""
    one = [torch.tensor([value], dtype=torch.float64) for value in (angle, scale, shear, float(flip))]
    moved = torch.tensor([translate], dtype=torch.float64)
    return affine_crop_thetas(store_size, output_size, one[0], moved, one[1], one[2], one[3])[0]


def affine_crop(images: torch.Tensor, theta: torch.Tensor, output_size: int) -> torch.Tensor:
    """Sample (C, H, W) or (N, C, H, W) images through ``theta`` ((2, 3) or (N, 2, 3)): uint8 in, float in [0, 1] out.

    Bilinear with ``padding_mode='border'`` is Keras' ``fill_mode='nearest'``: corners the moved
    image no longer covers repeat its edge pixels instead of turning black.
    """
    single = images.ndim == 3
    batch = v2.functional.to_dtype(images[None] if single else images, torch.float32, scale=True)
    thetas = theta[None] if single else theta
    size = [len(batch), batch.shape[-3], output_size, output_size]
    grid = nn.functional.affine_grid(thetas, size, align_corners=False).to(batch.dtype)
    sampled = nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0] if single else sampled


def one_or_batch(forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
    """Let a ``forward`` written for (N, C, H, W) batches take one (C, H, W) image too, as a batch of one."""

    @functools.wraps(forward)
    def either(self: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return forward(self, images[None])[0] if images.ndim == 3 else forward(self, images)

    return either


class RandomAffineCrop(nn.Module):
    """Keras-style random rotation, shift, shear, zoom and flip plus the centre crop, as one resampling.

    The ranges are RandomAffine's (``shift`` a fraction of the stored image, ``shear`` along x in
    degrees, scale in [1 - zoom, 1 + zoom]), but shifts are not rounded to whole pixels. Draws use
    the global torch RNG, so ``torch.manual_seed`` repeats them; each image of a batch gets its own.
    Returns float in [0, 1]. One ``grid_sample`` straight to the output size costs a tenth of
    rotating an edge-padded copy of the stored image and cropping it twice, and one call for a
    whole batch a tenth again of one call per image.
    """

    def __init__(
        self, store_size: int, output_size: int, degrees: float, shift: float, shear: float, zoom: float, flip: bool
    ) -> None:
        super().__init__()
        self.store_size, self.output_size = store_size, output_size
        self.degrees, self.shift, self.shear, self.zoom, self.flip = degrees, shift, shear, zoom, flip

    def extra_repr(self) -> str:  # names the whole augmentation in feature-cache keys
        return ", ".join(
            f"{key}={value}" for key, value in vars(self).items() if not key.startswith("_") and key != "training"
        )

    @one_or_batch
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        draws = (torch.rand(len(images), 6) * 2 - 1).double()  # per image: angle, x and y shift, zoom, shear, flip
        theta = affine_crop_thetas(
            self.store_size,
            self.output_size,
            angle=draws[:, 0] * self.degrees,
            translate=draws[:, 1:3] * self.shift * self.store_size,
            scale=1 + draws[:, 3] * self.zoom,
            shear=draws[:, 4] * self.shear,
            flip=(draws[:, 5] < 0) & self.flip,
        )
        return affine_crop(images, theta, self.output_size)


class RandomShiftFlip(nn.Module):
    """A random ``size`` crop of the image edge-reflected by ``padding`` pixels, then a horizontal flip
    half the time: whole-pixel moves with no resampling blur, each image of a batch its own.

    torchvision's RandomCrop and RandomHorizontalFlip would move a whole batch the same way; this indexes
    every image's rows and columns instead, on any dtype, without materializing the padded copy.
    """

    def __init__(self, size: int, padding: int) -> None:
        super().__init__()
        self.size, self.padding = size, padding

    def extra_repr(self) -> str:
        return f"size={self.size}, padding={self.padding}"

    @one_or_batch
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        count, (height, width) = len(images), images.shape[-2:]
        tops = torch.randint(0, height + 2 * self.padding - self.size + 1, (count,))
        lefts = torch.randint(0, width + 2 * self.padding - self.size + 1, (count,))
        flips = torch.rand(count) < 0.5
        steps = torch.arange(self.size)
        rows = reflect_indices(tops[:, None] + steps - self.padding, height)
        columns = reflect_indices(lefts[:, None] + steps - self.padding, width)
        columns = torch.where(flips[:, None], columns.flip(-1), columns)
        picked = images[torch.arange(count)[:, None, None], :, rows[:, :, None], columns[:, None, :]]
        return picked.permute(0, 3, 1, 2).contiguous()  # indexing puts the channels last


def reflect_indices(coordinates: torch.Tensor, length: int) -> torch.Tensor:
    """Indices into ``length`` pixels for coordinates up to one length outside, mirrored at the edges
    without repeating the edge pixel (``padding_mode='reflect'``)."""
    mirrored = torch.where(coordinates < 0, -coordinates, coordinates)
    return torch.where(mirrored > length - 1, 2 * (length - 1) - mirrored, mirrored)


def train_transform(preprocessing: Preprocessing, preset: str) -> v2.Compose:
    """uint8 training images (C, H, W) or (N, C, H, W), at :func:`training_store_size` -> augmented, normalized floats.

    ``standard`` follows the notes' ImageDataGenerator: rotation 40 degrees, width/height shift
    0.2, shear 0.2 rad (about 11.5 degrees), zoom 0.2, channel shift, horizontal flip, nearest fill.
    ``light`` suits digits and text: rotation 10, shift 0.1, zoom 0.1, no flip, no colour change.
    ``shift_flip`` is the usual one for CIFAR-sized images: whole-pixel shifts of up to 1/16 of the side
    (edge-reflected; 2 px at 32 px, what airbench tuned for runs of 10-15 epochs) and horizontal
    flips, with no resampling blur.
    """
    store, size = training_store_size(preprocessing), preprocessing.input_size
    steps: list[nn.Module]
    if preset == "shift_flip":
        steps = [RandomShiftFlip(size, padding=max(1, size // 16)), v2.ToDtype(torch.float32, scale=True)]
    elif preset == "standard":
        steps = [RandomAffineCrop(store, size, degrees=40, shift=0.2, shear=math.degrees(0.2), zoom=0.2, flip=True)]
    elif preset == "light":
        steps = [RandomAffineCrop(store, size, degrees=10, shift=0.1, shear=0.0, zoom=0.1, flip=False)]
    else:
        steps = [v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True)]
    if preset == "standard" and preprocessing.channels == 3:
        steps.append(RandomChannelShift(0.1))
    steps.append(v2.Normalize(list(preprocessing.mean), list(preprocessing.std)))
    return v2.Compose(steps)


def eval_transform(preprocessing: Preprocessing) -> v2.Compose:
    """uint8 image (or batch) already cropped and resized -> normalized float tensor."""
    return v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(preprocessing.mean), list(preprocessing.std))]
    )
