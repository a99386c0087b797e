"""Test-time augmentation: the views of a batch a model also sees, and how each view's boxes map back.

``flip`` averages an image with its mirror. ``shift_flip`` adds the image and its mirror each moved
diagonally by one pixel per 32 of width, both ways (6 views): the fast CIFAR-10 work (airbench)
found these small translations worth a few tenths of a point on 32 px images, at 3x the cost of
``flip``. PyTorch and exported engines both average their views through :func:`averaged_views`,
so every engine augments the same pixels the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cnnkit.config import Tta
from cnnkit.data.transforms import reflect_indices
from cnnkit.errors import CnnkitError
from cnnkit.models.localizer import mirror_boxes

TTA_MODES = tuple(mode.value for mode in Tta)


def check_tta(tta: str) -> None:
    if tta not in TTA_MODES:
        raise CnnkitError(f"--tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")


@dataclass(frozen=True)
class View:
    """The batch moved by ``shift`` pixels (right and down; edge-reflected), then mirrored if ``mirror``."""

    mirror: bool = False
    shift: int = 0

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) of any dtype -> the same batch as this view sees it."""
        if self.shift:
            height, width = images.shape[-2:]
            rows = reflect_indices(torch.arange(height, device=images.device) - self.shift, height)
            columns = reflect_indices(torch.arange(width, device=images.device) - self.shift, width)
            images = images[..., rows[:, None], columns[None, :]]
        return images.flip(-1) if self.mirror else images

    def boxes_back(self, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Corners (N, 4) in [0, 1] predicted on this view -> the same boxes on the original image."""
        if self.mirror:
            boxes = mirror_boxes(boxes)
        if self.shift:
            boxes = boxes - boxes.new_tensor([self.shift / width, self.shift / height] * 2)
        return boxes


def views(tta: str, width: int) -> tuple[View, ...]:
    """The views ``tta`` averages for images ``width`` pixels wide; the plain image comes first."""
    check_tta(tta)
    if tta == Tta.none:
        return (View(),)
    if tta == Tta.flip:
        return View(), View(mirror=True)
    step = max(1, round(width / 32))
    return tuple(View(mirror, shift) for shift in (0, -step, step) for mirror in (False, True))


def averaged_views(
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]], batch: torch.Tensor, tta: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``run`` (a batch -> probabilities and boxes or None) averaged over ``tta``'s views of ``batch``."""
    height, width = batch.shape[-2:]
    probabilities, boxes = [], []
    for view in views(tta, width):
        probs, box = run(view.apply(batch))
        probabilities.append(probs)
        if box is not None:
            boxes.append(view.boxes_back(box, height, width))
    mean_probabilities = torch.stack(probabilities).mean(0)
    return mean_probabilities, torch.stack(boxes).mean(0) if boxes else None
