"""Intermediate activations: the channels of layers from the input to the output for one image, as pictures.

Each channel encodes a fairly independent feature, so each is drawn as its own small greyscale
image (the notes' recipe: standardize, then ``* 64 + 128`` and clip to 0-255), tiled into one grid
per layer. The first layers act as edge detectors that fire almost everywhere; deeper ones are
more abstract and sparser, and channels whose pattern is absent from the image stay blank (drawn
dark here).

The candidate layers are the convolution, pooling and activation modules of ``model.features``
(the rows ``cnnkit summary`` lists, plus activations) whose output is a map; by default
``num_layers`` of them are picked evenly from the first to the last, so the picture shows the
whole network's depth, not only its first block. Each panel shows at most ``MAX_CHANNELS``
channels, and the whole PNG stays within about 2000 pixels (see :func:`cnnkit.explain.grid.save_panels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.grid import Panel, save_panels, tile
from cnnkit.explain.layers import collect_first_calls, eval_mode, feature_modules, model_device, trace_calls
from cnnkit.explain.source import model_input
from cnnkit.models.classifier import Classifier

DEFAULT_LAYERS = 8
IMAGES_PER_ROW = 16
MAX_CHANNELS = 32  # two rows of a panel: enough to see what a layer does, without a 10 MB picture

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


def spread_layers(model: Classifier, inputs: torch.Tensor, num_layers: int = DEFAULT_LAYERS) -> list[str]:
    """``num_layers`` visual layers with a map output, evenly spaced from the first to the last one the network runs."""
    if num_layers < 1:
        raise CnnkitError(f"--layers must be at least 1, not {num_layers}")
    candidates: list[str] = []
    for call in trace_calls(model, inputs):  # in the order the calls finish: the order of computation for leaves
        if call.is_spatial and is_visual_layer(call.module) and call.name not in candidates:
            candidates.append(call.name)
    if len(candidates) <= num_layers:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, num_layers).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


def layer_activations(
    model: Classifier, inputs: torch.Tensor, num_layers: int = DEFAULT_LAYERS, layers: list[str] | None = None
) -> list[LayerActivation]:
    """The outputs of ``layers`` (default: ``num_layers`` spread over the depth) for one normalized image."""
    inputs = inputs.to(model_device(model), torch.float32)
    with eval_mode(model), torch.autocast(model_device(model).type, enabled=False):
        names = layers or spread_layers(model, inputs, num_layers)
        modules = feature_modules(model)
        chosen = {name: modules[name] for name in names if name in modules}
        calls = collect_first_calls(model, inputs, chosen, len(chosen))
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


def activation_panel(
    activation: LayerActivation, images_per_row: int = IMAGES_PER_ROW, max_channels: int = MAX_CHANNELS
) -> Panel:
    channels, height, width = activation.maps.shape
    shown = f"channels 0-{max_channels - 1} of {channels}" if channels > max_channels else f"{channels} channels"
    title = f"{activation.name} ({activation.kind}): {shown}, {height}x{width}"
    return Panel(title, tile(channel_images(activation.maps[:max_channels]), images_per_row))


def plot_activations(
    activations: list[LayerActivation], path: str | Path, title: str = "Intermediate activations"
) -> Path:
    """One PNG with one panel per layer, every channel of that layer tiled ``IMAGES_PER_ROW`` to a row."""
    return save_panels([activation_panel(a) for a in activations], path, title)
