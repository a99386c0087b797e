"""Run one blank image through a model with forward hooks attached: shapes, counts, summaries."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def probe(model: nn.Module, hooks: Iterable[RemovableHandle], input_size: int, channels: int = 3) -> None:
    """Forward a zero image in eval mode, then remove ``hooks`` and restore the model's mode.

    Under ``torch.device("meta")`` the image is a meta tensor, so nothing is computed or allocated.
    """
    hooks = list(hooks)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
