"""Models that come from timm: Xception, SE-ResNet-50, and any timm model by name as ``timm:NAME``.

timm's pretrained config supplies the preprocessing and where the weights live; weights are read
from the local caches only (see :mod:`cnnkit.models.weights_cache`).
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from timm.models import get_pretrained_cfg

from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import ModelInfo, Preprocessing
from cnnkit.models.registration import register_model
from cnnkit.models.weights_cache import find_cached_weights, locate_weights
from cnnkit.models.wrapping import classifier_from_network

TIMM_PREFIX = "timm:"


def _pretrained_cfg(timm_name: str) -> Any:
    """timm's default weight config for ``timm_name`` (``None`` when it has no weights); unknown names raise."""
    if not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(TIMM_PREFIX + name for name in close)}?" if close else ""
        raise CnnkitError(f"timm has no model {timm_name!r}.{hint}")
    return get_pretrained_cfg(timm_name)


def _preprocessing(cfg: Any) -> Preprocessing:
    if cfg is None:
        return Preprocessing()
    channels, _, size = cfg.input_size
    return Preprocessing(
        input_size=size,
        channels=channels,
        crop_pct=cfg.crop_pct,
        interpolation=cfg.interpolation,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )


def build_timm_model(
    timm_name: str,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    model_name: str = "",
    **timm_kwargs: Any,
) -> Classifier:
    """Create ``timm_name`` with 1000 classes (so ImageNet weights fit), then split it into features and head.

    ``model_name`` is the name the user asked for, for messages.
    """
    cfg = _pretrained_cfg(timm_name)
    weight_source: dict[str, Any] = {}
    if pretrained:
        cached = find_cached_weights(model_name or TIMM_PREFIX + timm_name, cfg.url or None, cfg.hf_hub_id)
        if cached is not None:
            weight_source["pretrained_cfg_overlay"] = {"file": str(cached)}
    network = timm.create_model(timm_name, pretrained=pretrained, num_classes=1000, **weight_source, **timm_kwargs)
    head_path = network.pretrained_cfg["classifier"]
    if not isinstance(head_path, str):
        raise CnnkitError(f"timm model {timm_name} has several classifier heads {head_path}; pick a single-head model")
    return classifier_from_network(network, head_path, num_classes, pretrained, dropout)


def timm_model_info(timm_name: str) -> ModelInfo:
    """Registry entry for ``timm:NAME``, made on demand rather than registering timm's whole catalogue."""
    cfg = _pretrained_cfg(timm_name)
    has_weights = cfg is not None and bool(cfg.url or cfg.hf_hub_id)
    preprocessing = _preprocessing(cfg)

    def builder(
        num_classes: int, pretrained: bool = False, input_size: int = preprocessing.input_size, **kwargs: Any
    ) -> Classifier:
        return build_timm_model(timm_name, num_classes, pretrained, **kwargs)

    return ModelInfo(
        name=TIMM_PREFIX + timm_name,
        builder=builder,
        preprocessing=preprocessing,
        description=f"timm model {timm_name}",
        pretrained="online" if has_weights else "none",
        family="timm",
        weights_found=(lambda: locate_weights("timm", cfg.url or None, cfg.hf_hub_id)) if has_weights else None,
    )


def _register(name: str, timm_name: str, **registration: Any) -> None:
    cfg = get_pretrained_cfg(timm_name)
    preprocessing = _preprocessing(cfg)

    def weights_found() -> str | None:
        return locate_weights("timm", cfg.url or None, cfg.hf_hub_id)

    @register_model(name, preprocessing=preprocessing, pretrained="online", weights_found=weights_found, **registration)
    def builder(
        num_classes: int, pretrained: bool = False, input_size: int = preprocessing.input_size, dropout: float = 0.0
    ) -> Classifier:
        return build_timm_model(timm_name, num_classes, pretrained, dropout, model_name=name)


_register(
    "xception",
    "legacy_xception",
    description="Xception: entry/middle/exit flows of depthwise separable convs with residual shortcuts, 299 px",
    family="xception",
    imagenet_top1=79.0,
    reference_params={"num_classes": 1000, "params": 22_910_480, "source": "Keras applications table (003 notes)"},
)
_register(
    "se_resnet50",
    "legacy_seresnet50",
    description="SE-ResNet-50: ResNet-50 with a squeeze-and-excitation block (ratio 16) in every residual unit",
    family="senet",
    imagenet_top1=77.6,
    reference_params={
        "num_classes": 1000,
        "params": 28_088_024,
        "source": "ResNet-50 (25,557,032) + 16 SE blocks at ratio 16 (2,530,992), as in the SENet paper",
    },
)
