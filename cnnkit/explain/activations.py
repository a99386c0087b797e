"""Intermediate activations: every channel of the first layers' outputs for one image, as pictures.

Each channel encodes a fairly independent feature, so each is drawn as its own small greyscale
image (the notes' recipe: standardize, then ``* 64 + 128`` and clip to 0-255), tiled into one grid
per layer. The first layers act as edge detectors that fire almost everywhere; deeper ones are
more abstract and sparser, and channels whose pattern is absent from the image stay blank (drawn
dark here).

The layers shown are the convolution, pooling and activation modules of ``model.features`` (the
rows ``cnnkit summary`` lists, plus activations), in the order the network computes them; a
convolution followed by a ReLU therefore appears twice, before and after the ReLU. All layers
go into one PNG, one titled panel per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.grid import Panel, save_panels, tile
from cnnkit.explain.layers import collect_first_calls, eval_mode, feature_modules, model_device
from cnnkit.explain.source import model_input
from cnnkit.models.classifier import Classifier

DEFAULT_LAYERS = 8
IMAGES_PER_ROW = 16

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
)
_POOLING_TYPES = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def is_visual_layer(module: nn.Module) -> bool:
    """Convolutions, poolings and activations: the layers whose outputs are worth looking at."""
    return isinstance(module, (nn.Conv2d, *_POOLING_TYPES, *ACTIVATION_TYPES))


@dataclass
class LayerActivation:
    """One layer's output for one image: ``maps`` is (channels, height, width) float32."""

    name: str
    kind: str
    maps: np.ndarray


def layer_activations(
    model: Classifier, inputs: torch.Tensor, num_layers: int = DEFAULT_LAYERS
) -> list[LayerActivation]:
    """The outputs of the first ``num_layers`` visual layers for one normalized image (1, C, H, W)."""
    if num_layers < 1:
        raise CnnkitError(f"--layers must be at least 1, not {num_layers}")
    layers = {name: module for name, module in feature_modules(model).items() if is_visual_layer(module)}
    with eval_mode(model), torch.autocast(model_device(model).type, enabled=False):
        calls = collect_first_calls(model, inputs.to(model_device(model), torch.float32), layers, num_layers)
    return [
        LayerActivation(name, type(module).__name__, output[0].float().cpu().numpy()) for name, module, output in calls
    ]


def image_activations(
    model: Classifier, image: torch.Tensor, num_layers: int = DEFAULT_LAYERS
) -> list[LayerActivation]:
    """:func:`layer_activations` for a decoded uint8 image (C, H, W), cropped and resized as the model expects."""
    return layer_activations(model, model_input(model, image), num_layers)


def channel_images(maps: np.ndarray) -> np.ndarray:
    """Each channel standardized on its own, then spread around grey: ``clip(z * 64 + 128, 0, 255)``.

    A constant channel (the filter found nothing, or found it everywhere) becomes 0, so blank
    channels stand out as dark tiles.
    """
    flat = maps.reshape(len(maps), -1)
    mean, std = flat.mean(axis=1), flat.std(axis=1)
    live = std > 1e-6 * np.maximum(1.0, np.abs(mean))
    scaled = (maps - mean[:, None, None]) / np.where(live, std, 1.0)[:, None, None] * 64 + 128
    scaled[~live] = 0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def activation_panel(activation: LayerActivation, images_per_row: int = IMAGES_PER_ROW) -> Panel:
    channels, height, width = activation.maps.shape
    title = f"{activation.name} ({activation.kind}): {channels} channels of {height}x{width}"
    return Panel(title, tile(channel_images(activation.maps), images_per_row))


def plot_activations(
    activations: list[LayerActivation], path: str | Path, title: str = "Intermediate activations"
) -> Path:
    """One PNG with one panel per layer, every channel of that layer tiled ``IMAGES_PER_ROW`` to a row."""
    return save_panels([activation_panel(a) for a in activations], path, title)
