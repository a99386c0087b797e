"""Grad-CAM and Grad-CAM++: which parts of an image made the network pick a class.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional layer's output by the
mean gradient of the class score with respect to that channel, adds the weighted channels up and
keeps the positive part: a coarse map, at the layer's resolution, of where the evidence for the
class lies. Grad-CAM++ (Chattopadhay et al., 2018) weighs every position's gradient separately
instead of averaging them, which spreads the heat over several instances of a class.

The score is the class logit (before softmax). Everything runs in float32 without autocast: bf16
gradients of a single logit are too coarse for a faithful map. The default layer is the last
module of ``model.features`` whose output is larger than 1x1, the counterpart of the notes'
``block5_conv3``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.data.transforms import crop_box
from cnnkit.errors import CnnkitError
from cnnkit.explain.layers import capture_output, eval_mode, get_layer, last_spatial_layer, model_device
from cnnkit.explain.overlay import DEFAULT_ALPHA, overlay_heatmap, save_captioned_overlay, to_rgb_array
from cnnkit.explain.source import model_input
from cnnkit.models.classifier import Classifier

METHODS = ("gradcam", "gradcam++")


@dataclass
class ClassActivationMaps:
    """Heatmaps for a batch: ``heatmaps`` (N, h, w) at the layer's resolution, each scaled to [0, 1].

    A map is all zeros when nothing in the image speaks for the class.
    """

    heatmaps: torch.Tensor
    logits: torch.Tensor
    class_indices: torch.Tensor
    layer: str
    method: str


def _channel_weights(activations: torch.Tensor, gradients: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C) importance of each channel for the class score."""
    if method == "gradcam":
        return gradients.mean(dim=(2, 3))
    # Grad-CAM++ with the exponential-score closed form: alpha = g^2 / (2 g^2 + sum(A) g^3).
    squared = gradients.pow(2)
    denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
    alphas = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return (alphas * gradients.clamp(min=0)).sum(dim=(2, 3))


def class_activation_maps(
    model: Classifier,
    inputs: torch.Tensor,
    class_indices: Sequence[int] | torch.Tensor | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
) -> ClassActivationMaps:
    """Heatmaps for normalized ``inputs`` (N, C, H, W) and one class per image (default: the predicted one).

    The batch is explained in one forward and one backward pass: each image's logit depends only on
    that image (the model runs in eval mode), so the gradient of their sum separates per image.
    ``layer`` names a module (as in ``cnnkit summary``); by default the last one with a spatial output.
    """
    if method not in METHODS:
        raise CnnkitError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    device = model_device(model)
    inputs = inputs.detach().to(device, torch.float32).requires_grad_(True)  # gradients exist even if frozen
    with eval_mode(model), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        layer = layer or last_spatial_layer(model, inputs[:1])
        with capture_output(get_layer(model, layer)) as outputs:
            logits = model(inputs).float()
        if not outputs or outputs[-1].dim() != 4:
            raise CnnkitError(f"layer {layer!r} does not output a (N, C, H, W) map; pick a convolutional layer")
        activations = outputs[-1]
        if class_indices is None:
            targets = logits.argmax(dim=1)
        else:
            targets = torch.as_tensor(class_indices, device=logits.device).reshape(-1)
            if len(targets) != len(logits) or not ((targets >= 0) & (targets < logits.shape[1])).all():
                raise CnnkitError(f"need one class index in 0..{logits.shape[1] - 1} per image, got {targets.tolist()}")
        score = logits.gather(1, targets[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, activations)
    weights = _channel_weights(activations.detach(), gradients, method)
    heatmaps = F.relu((weights[:, :, None, None] * activations.detach()).sum(dim=1))
    peaks = heatmaps.amax(dim=(1, 2), keepdim=True)
    heatmaps = heatmaps / torch.where(peaks > 0, peaks, torch.ones_like(peaks))
    return ClassActivationMaps(heatmaps.cpu(), logits.detach().cpu(), targets.cpu(), layer, method)


def upsample(heatmaps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) heatmaps resized bilinearly to ``size`` (height, width), kept in [0, 1]."""
    resized = F.interpolate(heatmaps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return resized.clamp(0.0, 1.0)


@dataclass
class Explanation:
    """A heatmap for one image, in the original image's pixels.

    ``heatmap`` is (H, W) in [0, 1], zero outside the centre square the model was shown
    (``box`` = top, left, side); ``probabilities`` are the model's class probabilities.
    """

    image: torch.Tensor
    heatmap: np.ndarray
    box: tuple[int, int, int]
    probabilities: torch.Tensor
    class_index: int
    layer: str
    method: str

    @property
    def peak(self) -> tuple[int, int] | None:
        """(x, y) of the hottest pixel in the original image (x to the right, y down); None if nothing is hot."""
        if not self.heatmap.max() > 0:
            return None
        y, x = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return int(x), int(y)

    def seen_mask(self) -> np.ndarray:
        top, left, side = self.box
        mask = np.zeros(self.heatmap.shape, dtype=bool)
        mask[top : top + side, left : left + side] = True
        return mask

    def overlay(self, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
        """The image with the heatmap blended over it: (H, W, 3) uint8, the image's own size."""
        return overlay_heatmap(to_rgb_array(self.image), self.heatmap, alpha, seen=self.seen_mask())

    def caption(self, classes: list[str]) -> str:
        """What the heatmap explains: ``Grad-CAM of 'cat' (p = 0.931), layer features.layer4``."""
        name = "Grad-CAM" if self.method == "gradcam" else "Grad-CAM++"
        probability = float(self.probabilities[self.class_index])
        return f"{name} of {classes[self.class_index]!r} (p = {probability:.3f}), layer {self.layer}"

    def save(self, classes: list[str], path: str | Path, alpha: float = DEFAULT_ALPHA) -> Path:
        """The overlay as a PNG with a colour bar and :meth:`caption` as its title (also in the PNG's text)."""
        return save_captioned_overlay(self.overlay(alpha), self.caption(classes), path)

    def top(self, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` most probable classes as (index, probability), best first."""
        values, indices = self.probabilities.topk(min(k, len(self.probabilities)))
        return [(int(i), float(p)) for p, i in zip(values, indices, strict=True)]


def explain_image(
    model: Classifier,
    image: torch.Tensor,
    class_index: int | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    prepared: bool = False,
    temperature: float = 1.0,
) -> Explanation:
    """Explain one decoded uint8 image (C, H, W) of any size, cropped and resized as the model expects.

    ``prepared=True`` says the image already is the model's input crop (what
    :meth:`cnnkit.predictor.Predictor.load_images` returns), so it is not cropped again.
    ``temperature`` divides the logits before softmax, as a calibrated run's predictions do.
    """
    crop_pct = 1.0 if prepared else model.preprocessing.crop_pct
    inputs = model_input(model, image, crop_pct)
    maps = class_activation_maps(
        model, inputs, None if class_index is None else [class_index], method=method, layer=layer
    )
    height, width = image.shape[-2:]
    top, left, side = crop_box(height, width, crop_pct)
    heatmap = np.zeros((height, width), dtype=np.float32)
    heatmap[top : top + side, left : left + side] = upsample(maps.heatmaps, (side, side))[0].numpy()
    return Explanation(
        image=image,
        heatmap=heatmap,
        box=(top, left, side),
        probabilities=(maps.logits[0] / temperature).softmax(0),
        class_index=int(maps.class_indices[0]),
        layer=maps.layer,
        method=method,
    )


def gradcam_overlay(
    model: Classifier,
    image: torch.Tensor,
    class_index: int | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    prepared: bool = False,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """The image (uint8 (C, H, W)) with the Grad-CAM heatmap of ``class_index`` (default: predicted) over it.

    Returns an (H, W, 3) uint8 array of the image's own size, ready for a report or ``save_png``.
    """
    return explain_image(model, image, class_index, method=method, layer=layer, prepared=prepared).overlay(alpha)
