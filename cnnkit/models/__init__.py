"""Models: the registry, the Classifier shape, building blocks, the MAC counter and the Keras-style summary.

Names are imported lazily, so that reading a model's preprocessing (``cnnkit.models.config``) does not
load torch.
"""

from __future__ import annotations

from typing import Any

from cnnkit._lazy import lazy_attribute

_EXPORTS = {
    "Classifier": "cnnkit.models.classifier",
    "FireModule": "cnnkit.models.blocks",
    "GlobalAvgPool2d": "cnnkit.models.classifier",
    "InceptionModule": "cnnkit.models.blocks",
    "LocalResponseNorm": "cnnkit.models.blocks",
    "ModelInfo": "cnnkit.models.config",
    "Preprocessing": "cnnkit.models.config",
    "ResidualUnit": "cnnkit.models.blocks",
    "SEBlock": "cnnkit.models.blocks",
    "SeparableConv2d": "cnnkit.models.blocks",
    "Summary": "cnnkit.models.summary",
    "count_macs": "cnnkit.models.flops",
    "create_model": "cnnkit.models.registry",
    "get_model_info": "cnnkit.models.registry",
    "imagenet_classes": "cnnkit.models.imagenet",
    "linear_head": "cnnkit.models.classifier",
    "list_models": "cnnkit.models.registry",
    "mlp_head": "cnnkit.models.classifier",
    "register_model": "cnnkit.models.registration",
    "set_batchnorm_eval": "cnnkit.models.classifier",
    "summarize": "cnnkit.models.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)
