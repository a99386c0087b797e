"""The model registry: ``create_model(name, ...)`` and ``list_models()``, in the spirit of timm.

Builders register themselves with :func:`~cnnkit.models.registration.register_model`; each returns a
:class:`~cnnkit.models.classifier.Classifier` and carries a :class:`Preprocessing` record.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch

from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import HEADS, Classifier, mlp_head
from cnnkit.models.config import ModelInfo
from cnnkit.models.registration import REGISTRY


def _ensure_builtin_models_loaded() -> None:
    from cnnkit.models import classic, compact, efficientnet, scratch, timm_zoo, torchvision_zoo  # noqa: F401  (registers)


def list_models() -> list[ModelInfo]:
    _ensure_builtin_models_loaded()
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def get_model_info(name: str) -> ModelInfo:
    """The registered entry ``name``, or ``timm:NAME`` for any model timm knows."""
    _ensure_builtin_models_loaded()
    if name.startswith("timm:"):
        from cnnkit.models.timm_zoo import timm_model_info

        return timm_model_info(name.removeprefix("timm:"))
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CnnkitError(f"unknown model {name!r}.{hint} Run 'cnnkit models' to list them.")
    return REGISTRY[name]


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained: bool = False,
    image_size: int | None = None,
    weights: str | Path | None = None,
    head: str = "linear",
    **kwargs: Any,
) -> Classifier:
    """Build a registered model.

    ``pretrained=True`` loads ImageNet weights for the feature extractor (and the head too when
    ``num_classes == 1000``); ``weights=PATH`` loads a local safetensors file or state dict
    instead. ``head="mlp"`` replaces the model's dense head by dense 128 + ReLU + dropout + dense.
    The returned model has ``model_name`` and ``preprocessing`` attributes.
    """
    info = get_model_info(name)
    preprocessing = info.preprocessing.with_size(image_size)
    if pretrained and info.pretrained == "none" and weights is None:
        raise CnnkitError(f"model {name!r} has no pretrained weights; train it from scratch (pretrained=False).")
    model = info.builder(
        num_classes=num_classes,
        pretrained=pretrained and weights is None,
        input_size=preprocessing.input_size,
        **kwargs,
    )
    if head not in HEADS:
        raise CnnkitError(f"--head must be one of {', '.join(HEADS)}, not {head!r}")
    if head == "mlp":
        model.head = mlp_head(model.num_features, num_classes, dropout=kwargs.get("dropout", 0.5))
    if weights is not None:
        load_state_into(model, read_state_dict(weights))
    model.model_name = name
    model.preprocessing = preprocessing
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights from safetensors or a plain tensor state dict (never arbitrary pickles)."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from cnnkit.fileio import load_weights

        return load_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file gets the same advice
        raise CnnkitError(
            f"cannot read weights from {path}: {exc}. Use a safetensors file or a tensor state dict."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CnnkitError(f"{path} does not hold a state dict of tensors")
    return state


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights strictly, turning a mismatch into a one-line error."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CnnkitError(f"weights do not fit this model ({first}). Check --model and --num-classes.") from exc
