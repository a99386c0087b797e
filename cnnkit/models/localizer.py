"""Classification and localization: a classifier with a second output, the object's box.

As in the notes, the box is four numbers predicted beside the class: the centre and the square
roots of the width and height, each in [0, 1] of the image (a square root so that a 10-pixel miss
costs less on a large box than on a small one). :class:`Localizer` returns the box as corners
(``xmin, ymin, xmax, ymax`` in [0, 1]), which is what IoU, drawing and export need.

The box head reads the base's last feature map rather than its pooled vector when the base can
be split just before its global pooling: pooling keeps what is in the image but mostly forgets
where, and the map keeps both. The classifier's own layers are shared, not copied, so its
freezing, unfreezing and weights work as for a plain classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.models.classifier import Classifier, _layers_in_order

BOX_HIDDEN = 128
MAP_CHANNELS = 64
MAX_MAP_SIDE = 7  # larger maps are averaged down to this side before the box head's dense layers


def boxes_from_parameters(parameters: torch.Tensor) -> torch.Tensor:
    """(cx, cy, sqrt w, sqrt h) -> (xmin, ymin, xmax, ymax), all normalized to the image."""
    centre, size = parameters[..., :2], parameters[..., 2:].square()
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def parameters_from_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(xmin, ymin, xmax, ymax) -> (cx, cy, sqrt w, sqrt h): the inverse of :func:`boxes_from_parameters`."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return torch.cat([centre, (size + 1e-8).sqrt()], dim=-1)


def mirror_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Corners of the boxes in the horizontally mirrored image: x becomes 1 - x, and xmin and xmax swap."""
    return torch.stack([1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]], dim=-1)


@torch.no_grad()
def split_before_pooling(features: nn.Module, channels: int, input_size: int) -> tuple[nn.Module, nn.Module] | None:
    """``features`` as (body up to the last spatial map, the pooling after it), or None where it cannot split.

    The split is checked on a probe image in inference mode: the two parts in a row must give
    what ``features`` gives.
    """
    layers = _layers_in_order(features)
    pools = [i for i, layer in enumerate(layers) if "Pool" in type(layer).__name__]
    if not pools or pools[-1] == 0:
        return None
    body, pool = nn.Sequential(*layers[: pools[-1]]), nn.Sequential(*layers[pools[-1] :], nn.Flatten(1))
    was_training = features.training
    features.eval()
    try:
        probe = torch.randn(1, channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
        spatial = body(probe)
        same = spatial.ndim == 4 and torch.allclose(pool(spatial), features(probe).flatten(1), atol=1e-4, rtol=1e-4)
    except (RuntimeError, TypeError):
        same = False
    features.train(was_training)
    return (body, pool) if same else None


class Localizer(nn.Module):
    """A :class:`Classifier` plus a box head: ``forward`` returns (class logits (N, K), boxes (N, 4) as corners)."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        preprocessing = classifier.preprocessing
        split = split_before_pooling(classifier.features, preprocessing.channels, preprocessing.input_size)
        self._parts = split  # shared layers of classifier.features, not registered twice
        if split is None:
            self.box_head = nn.Sequential(
                nn.Linear(classifier.num_features, BOX_HIDDEN), nn.ReLU(inplace=True), nn.Linear(BOX_HIDDEN, 4)
            )
        else:
            with torch.no_grad():
                probe = torch.zeros(1, preprocessing.channels, preprocessing.input_size, preprocessing.input_size)
                was_training = classifier.training
                _, map_channels, height, width = split[0].eval()(probe).shape
                classifier.train(was_training)
            side = (min(height, MAX_MAP_SIDE), min(width, MAX_MAP_SIDE))
            self.box_head = nn.Sequential(
                nn.Conv2d(map_channels, MAP_CHANNELS, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(side),
                nn.Flatten(1), nn.Linear(MAP_CHANNELS * side[0] * side[1], BOX_HIDDEN), nn.ReLU(inplace=True),
                nn.Linear(BOX_HIDDEN, 4),
            )  # fmt: skip
        self.preprocessing = preprocessing

    @property
    def features(self) -> nn.Module:
        return self.classifier.features

    @property
    def head(self) -> nn.Module:
        return self.classifier.head

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    @property
    def spatial(self) -> bool:
        """Whether the box head reads the last feature map (else the pooled vector)."""
        return self._parts is not None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._parts is None:
            pooled = self.classifier.features(x)
            raw = self.box_head(pooled)
        else:
            spatial = self._parts[0](x)
            pooled = self._parts[1](spatial)
            raw = self.box_head(spatial)
        return self.classifier.head(pooled), boxes_from_parameters(torch.sigmoid(raw.float()))
