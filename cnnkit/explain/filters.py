"""Filter patterns: the input each filter of a layer responds to most, found by gradient ascent.

Start from a grey image with a little noise (pixel values ``128 + U(0, 20)``), then repeat
``steps`` times: compute the gradient of the filter's mean activation with respect to the
pixels, divide it by its root mean square (so every step has the same size whatever the layer's
scale), and add ``step_size`` times it to the image. Pixels are in 0-255 units, so 40 steps of
size 1 move a typical pixel by up to about 40 grey levels. The notes' recipe, done for all filters
at once: one image per filter in a batch, each with its own gradient normalization. Every filter
starts from the same noisy image, so the differences between the patterns are the filters' own.

The default layer is a full (not depthwise) convolution halfway through the network, taken before
its activation: its patterns are stripes and textures, what the network builds its classes from.
The first convolution (``--layer`` with its name) is linear in the pixels, and its mean response
depends only on each colour channel's mean, so its patterns are flat colours (the notes' "colours"
of block1_conv1). After a ReLU, a filter that the grey start leaves at zero has no gradient and
keeps the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.grid import Panel, save_panels, tile
from cnnkit.explain.layers import eval_mode, get_layer, model_device, run_until, trace_calls
from cnnkit.models.classifier import Classifier

DEFAULT_FILTERS = 16
DEFAULT_STEPS = 40
DEFAULT_STEP_SIZE = 1.0
MAX_DEFAULT_SIZE = 128
PATTERNS_PER_ROW = 8


@dataclass
class FilterPatterns:
    """The patterns of the first filters of ``layer``: ``images`` (F, H, W, C) uint8 for display,
    and each filter's mean activation on the starting noise and on its final pattern."""

    layer: str
    images: np.ndarray
    start_activation: np.ndarray
    end_activation: np.ndarray


def default_filter_layer(model: Classifier, size: int) -> str:
    """The middle one of ``model.features``' full convolutions (depthwise ones left out), in the order they run.

    Halfway through, a filter has a receptive field large enough for a texture or a part of an object.
    """
    calls = trace_calls(model, torch.zeros(1, model.preprocessing.channels, size, size, device=model_device(model)))
    convolutions = [call.name for call in calls if isinstance(call.module, nn.Conv2d)]
    if not convolutions:
        raise CnnkitError("this model has no convolution; pass --layer to pick one of its layers")
    full = [call.name for call in calls if isinstance(call.module, nn.Conv2d) and call.module.groups == 1]
    candidates = full or convolutions
    return candidates[len(candidates) // 2]


def _display(pattern: torch.Tensor) -> np.ndarray:
    """The notes' ``deprocess_image``: centre, scale the std to 0.1, shift to 0.5, clip, then 0-255."""
    x = pattern - pattern.mean()
    x = x / (x.std() + 1e-5) * 0.1 + 0.5
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def filter_patterns(
    model: Classifier,
    layer: str | None = None,
    filters: int = DEFAULT_FILTERS,
    *,
    steps: int = DEFAULT_STEPS,
    step_size: float = DEFAULT_STEP_SIZE,
    size: int | None = None,
    seed: int = 0,
) -> FilterPatterns:
    """The input patterns that maximize the mean activation of the first ``filters`` filters of ``layer``.

    ``size`` is the side of the patterns, by default the model's input size but at most
    ``MAX_DEFAULT_SIZE`` so that 40 steps stay quick on a CPU. Runs in float32 and stops each
    forward pass at ``layer``.
    """
    if filters < 1 or steps < 0 or (size is not None and size < 1):
        raise CnnkitError(
            f"--filters and --size must be at least 1 and --steps at least 0, not {filters}, {size}, {steps}"
        )
    p = model.preprocessing
    size = size or min(p.input_size, MAX_DEFAULT_SIZE)
    device = model_device(model)
    mean = torch.tensor(p.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(p.std, device=device).view(1, -1, 1, 1)
    with eval_mode(model), torch.autocast(device.type, enabled=False):
        layer = layer or default_filter_layer(model, size)
        module = get_layer(model, layer)

        def mean_activations(pixels: torch.Tensor) -> torch.Tensor:
            output = run_until(model, (pixels / 255 - mean) / std, module)
            if output.dim() != 4:
                raise CnnkitError(f"layer {layer!r} does not output (N, C, H, W) maps; pick a convolutional layer")
            count = min(len(pixels), output.shape[1])
            return output[torch.arange(count), torch.arange(count)].mean(dim=(1, 2))

        generator = torch.Generator().manual_seed(seed)
        start_image = 128 + 20 * torch.rand((1, p.channels, size, size), generator=generator)
        pixels = start_image.repeat(filters, 1, 1, 1).to(device)
        with torch.no_grad():
            start = mean_activations(pixels)
        pixels = pixels[: len(start)]  # a layer with fewer channels than asked for has fewer patterns
        with torch.enable_grad():
            for _ in range(steps):
                pixels.requires_grad_(True)
                (gradient,) = torch.autograd.grad(mean_activations(pixels).sum(), pixels)
                rms = gradient.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                # No additive epsilon: gradients in pixel units can be far below the notes' 1e-5.
                rms = torch.where(rms > 0, rms, torch.ones_like(rms))
                pixels = (pixels + step_size * gradient / rms).detach()
        with torch.no_grad():
            end = mean_activations(pixels)
    images = np.stack([_display(pattern) for pattern in pixels.cpu()])
    return FilterPatterns(layer, images, start.cpu().numpy(), end.cpu().numpy())


def plot_filter_patterns(patterns: FilterPatterns, path: str | Path, title: str = "Filter patterns") -> Path:
    """The patterns tiled ``PATTERNS_PER_ROW`` to a row, filter 0 top left, in one PNG."""
    images = patterns.images
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    count, size = len(images), images.shape[1]
    panel_title = f"{patterns.layer}: filters 0-{count - 1}, {size}x{size} px, by gradient ascent from grey noise"
    return save_panels([Panel(panel_title, tile(images, PATTERNS_PER_ROW, gap=2, fill=255))], path, title)
