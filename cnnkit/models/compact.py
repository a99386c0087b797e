"""A compact residual network for small images (CIFAR-sized), built for speed on modest hardware.

The layout follows what the fast CIFAR-10 training work (DAWNBench's ResNet-9, airbench) found
pays off: few layers, wide maps, pooling right after each stage's first convolution so the
residual convolutions run at a quarter of the pixels, BatchNorm + GELU, global max-pooling, and
pooled features scaled by 1/8 so the head starts with small logits and SGD's high learning rate does
not swamp it. It trains at the images' own size (32 px) and is meant for Nesterov SGD with the
``one_cycle`` schedule, label smoothing, ``shift_flip`` augmentation and TTA (see ``cnnkit train --help``).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.models.classifier import Classifier, linear_head
from cnnkit.models.config import Preprocessing
from cnnkit.models.registration import register_model

STAGE_WIDTHS = (64, 256, 256)  # airbench94's widths; ``width`` scales them
FEATURE_SCALE = 1 / 8  # ResNet-9's logit scaling, applied before the head so a replaced head keeps it
SMALL_IMAGES = Preprocessing(input_size=32, mean=(0.491, 0.482, 0.447), std=(0.247, 0.243, 0.262))  # CIFAR-10's


def conv_bn_gelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.GELU()
    )


class Scale(nn.Module):
    """Multiplies by a constant: a layer rather than a head option, so it shows in the summary and survives export."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


class CompactStage(nn.Module):
    """Convolution, 2x2 max-pool, then a residual 3x3 convolution at the pooled size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
        )
        self.residual = conv_bn_gelu(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return x + self.residual(x)


@register_model(
    "compact_resnet",
    preprocessing=SMALL_IMAGES,
    description="Compact residual net for 32 px images: 3 stages (64-256-256 x width), max-pool, GELU",
    family="compact",
    reference_params={"num_classes": 10, "params": 1_973_186, "source": "cnnkit's own design (pins the layout)"},
)
def compact_resnet(
    num_classes: int, pretrained: bool = False, input_size: int = 32, dropout: float = 0.0, width: float = 1.0
) -> Classifier:
    """Works at any input size of 8 px or more (global max-pooling); ``width`` scales every stage."""
    widths = [max(8, round(w * width)) for w in STAGE_WIDTHS]
    stem_width = max(8, round(24 * width))
    layers: list[nn.Module] = [conv_bn_gelu(3, stem_width)]
    in_channels = stem_width
    for out_channels in widths:
        layers.append(CompactStage(in_channels, out_channels))
        in_channels = out_channels
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), Scale(FEATURE_SCALE)]
    return Classifier(nn.Sequential(*layers), linear_head(in_channels, num_classes, dropout), in_channels)


@register_model(
    "compact_resnet_s",
    preprocessing=SMALL_IMAGES,
    description="compact_resnet at half width (32-128-128): a quarter of the compute, sized for a CPU",
    family="compact",
    reference_params={"num_classes": 10, "params": 494_694, "source": "cnnkit's own design (pins the layout)"},
)
def compact_resnet_s(
    num_classes: int, pretrained: bool = False, input_size: int = 32, dropout: float = 0.0
) -> Classifier:
    """Trains CIFAR-sized images about four times faster than :func:`compact_resnet` on a CPU."""
    return compact_resnet(num_classes, pretrained, input_size, dropout, width=0.5)
