"""What explain and visualize look at: a network (a trained run or a pretrained model), an image, a class."""

from __future__ import annotations

import difflib

import torch

from cnnkit.data.transforms import center_crop_resize, eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier
from cnnkit.predictor import Subject, open_subject, read_image

__all__ = ["Subject", "class_index", "model_input", "open_subject", "read_image"]

_MAX_LISTED_CLASSES = 30


def model_input(model: Classifier, image: torch.Tensor, crop_pct: float | None = None) -> torch.Tensor:
    """A decoded uint8 image (C, H, W) as the (1, C, S, S) float batch the model takes: centre crop
    (``crop_pct``, default the model's own), resize, normalize."""
    p = model.preprocessing
    crop = center_crop_resize(image, p.input_size, p.crop_pct if crop_pct is None else crop_pct, p.interpolation)
    return eval_transform(p)(crop)[None]


def class_index(classes: list[str], name: str) -> int:
    """Index of the class called ``name``; otherwise an error listing the names (or the closest ones)."""
    if name in classes:
        return classes.index(name)
    if len(classes) <= _MAX_LISTED_CLASSES:
        known = f"the classes are {', '.join(classes)}"
    else:
        close = difflib.get_close_matches(name, classes, n=5)
        known = f"closest of the {len(classes)} classes: {', '.join(close)}" if close else f"{len(classes)} classes"
    raise CnnkitError(f"unknown class {name!r}; {known}")
