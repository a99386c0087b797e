"""ImageNet-1k class names, from the metadata torchvision ships (no download)."""

from __future__ import annotations

import functools


@functools.cache
def imagenet_classes() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
