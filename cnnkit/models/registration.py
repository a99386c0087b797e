"""Where builders register: the table of models, filled by each family module as it is imported.

It imports no family, so a family can register itself here while :mod:`cnnkit.models.registry`
(which loads every family before it answers) imports them all, without a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnkit.models.classifier import Classifier
from cnnkit.models.config import ModelInfo, Preprocessing

REGISTRY: dict[str, ModelInfo] = {}

Builder = Callable[..., Classifier]


def register_model(
    name: str,
    *,
    preprocessing: Preprocessing,
    description: str,
    pretrained: str = "none",
    family: str = "",
    imagenet_top1: float | None = None,
    reference_params: dict[str, Any] | None = None,
    weights_found: Callable[[], str | None] | None = None,
) -> Callable[[Builder], Builder]:
    """Register ``builder(num_classes, pretrained, input_size, **kwargs) -> Classifier``."""

    def decorator(builder: Builder) -> Builder:
        REGISTRY[name] = ModelInfo(
            name=name,
            builder=builder,
            preprocessing=preprocessing,
            description=description,
            pretrained=pretrained,
            family=family,
            imagenet_top1=imagenet_top1,
            reference_params=reference_params or {},
            weights_found=weights_found,
        )
        return builder

    return decorator
