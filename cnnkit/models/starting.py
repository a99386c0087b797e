"""Where a training run's starting weights come from, decided before any data is read.

A model asked for without pretrained weights on this machine trains from random initialisation;
that costs a lot of accuracy on small datasets, so it is said once, up front, with the ways out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.models.config import ModelInfo
from cnnkit.models.weights_cache import DOWNLOAD_ENV

OFFLINE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
RANDOM_INIT = "none (random init)"


class RandomInitWarning(UserWarning):
    """A model that has pretrained weights somewhere trains from random initialisation here."""


@dataclass(frozen=True)
class WeightsPlan:
    """``pretrained``: the transfer recipe (frozen base, new head, fine-tuning); ``imagenet``: the builder loads
    the library's weights; ``file``: a local file to load instead; ``source``: what the run records."""

    pretrained: bool
    imagenet: bool
    source: str
    file: Path | None = None
    warning: str | None = None


def _ways_out(name: str) -> str:
    return (
        f"to start from pretrained weights, pass --weights PATH (a local .safetensors file or a torchvision/timm "
        f".pth state dict for {name}), set {DOWNLOAD_ENV}=1 to let torchvision/timm download them, or choose a "
        f"model whose weights are on this machine: {', '.join(OFFLINE_MODELS)}"
    )


def _weights_file(path: str, pretrained: bool | None) -> WeightsPlan:
    from cnnkit.fileio import sha256_file

    file = Path(path)
    if not file.is_file():
        raise CnnkitError(f"--weights {path} does not exist; give a .safetensors file or a .pth state dict")
    recipe = True if pretrained is None else pretrained
    return WeightsPlan(recipe, False, f"file:{file.resolve()} sha256:{sha256_file(file)}", file)


def plan_weights(info: ModelInfo, pretrained: bool | None, weights: str | None = None) -> WeightsPlan:
    """The starting weights of ``info``'s model for ``--pretrained`` (None: not given) and ``--weights``."""
    if weights is not None:
        return _weights_file(weights, pretrained)
    if pretrained is False or info.weights_found is None:
        if pretrained and info.weights_found is None:
            raise CnnkitError(
                f"--pretrained: model {info.name!r} has no pretrained weights; leave out --pretrained to train it "
                f"from scratch, pass --weights PATH, or choose one of {', '.join(OFFLINE_MODELS)}"
            )
        return WeightsPlan(False, False, RANDOM_INIT)
    found = info.weights_found()
    if found is not None:
        return WeightsPlan(True, True, found)
    if pretrained:
        missing = f"--pretrained: the ImageNet weights of {info.name} are not on this machine"
        raise CnnkitError(f"{missing}; {_ways_out(info.name)}")
    warning = (
        f"{info.name} has no ImageNet weights on this machine, so it trains from random initialisation: expect much "
        f"lower accuracy than from pretrained weights (on one small photo dataset, 67.8% against 98.9% for "
        f"pretrained efficientnet_lite0); {_ways_out(info.name)}"
    )
    return WeightsPlan(False, False, RANDOM_INIT, warning=warning)


def load_starting_weights(model: Any, path: Path) -> str:
    """Load a weights file into ``model``: all of it, or the features alone when the head has another shape.

    Returns what was loaded (``"whole model"`` or ``"features"``); anything else that does not fit is a
    one-line error naming ``--weights``.
    """
    from cnnkit.models.registry import read_state_dict
    from cnnkit.models.wrapping import wrapped_layout

    state = wrapped_layout(model, read_state_dict(path))
    own = model.state_dict()
    heads = {key: value for key, value in own.items() if key.startswith("head.")}
    head_fits = all(key in state and tuple(state[key].shape) == tuple(value.shape) for key, value in heads.items())
    if not head_fits:
        state = {key: value for key, value in state.items() if not key.startswith("head.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[-1].strip()
        raise CnnkitError(f"--weights {path} does not fit {model.model_name} ({first[:160]}); check --model") from exc
    missing = [key for key in result.missing_keys if head_fits or not key.startswith("head.")]
    if missing or result.unexpected_keys:
        what = f"lacks {missing[0]}" if missing else f"has {result.unexpected_keys[0]}, which the model has not"
        raise CnnkitError(f"--weights {path} does not fit {model.model_name}: it {what}; check --model")
    return "whole model" if head_fits else "features"
