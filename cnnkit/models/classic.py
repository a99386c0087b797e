"""Architectures that torchvision and timm do not provide, written from cnnkit's blocks.

LeNet-5 as LeCun et al. (1998) describe it, and MobileNet v1 with its width multiplier as in
Keras. Both are trained from scratch (no ImageNet weights).
"""

from __future__ import annotations

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.blocks import SeparableConv2d
from cnnkit.models.classifier import Classifier, linear_head
from cnnkit.models.config import Preprocessing
from cnnkit.models.registration import register_model


@register_model(
    "lenet5_classic",
    preprocessing=Preprocessing(input_size=32, channels=1, mean=(0.0,), std=(1.0,)),
    description="LeNet-5 (LeCun 1998): 32x32 gray, conv 6 5x5, avg-pool, conv 16 5x5, avg-pool, dense 120-84, tanh",
    family="lenet",
    reference_params={
        "num_classes": 10,
        "params": 60_840,
        "source": "LeCun et al. 1998 (sparse C3, trainable subsampling, RBF output)",
    },
)
def lenet5_classic(
    num_classes: int, pretrained: bool = False, input_size: int = 32, dropout: float = 0.0
) -> Classifier:
    """No padding anywhere, so a 32x32 image shrinks to 16 maps of 5x5 before the dense C5 layer.

    Simplifications of the paper: C3 sees all 6 S2 maps (not 3-4 of them), the subsampling layers
    are plain averages, and the output is a dense layer instead of Euclidean RBF units.
    """
    side = ((input_size - 4) // 2 - 4) // 2
    if side < 1:
        raise CnnkitError(f"lenet5_classic needs --image-size of at least 16, not {input_size}")
    features = nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
    )
    return Classifier(features, linear_head(84, num_classes, dropout), 84)


# (output channels, stride) of MobileNet v1's 13 depthwise separable layers at width 1.0.
_MOBILENET_V1_LAYERS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _bn_relu6(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU6(inplace=True))


def _separable_layer(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU6, then pointwise 1x1 + BN + ReLU6, as in Keras' MobileNet."""
    between = _bn_relu6(in_channels)
    return nn.Sequential(
        SeparableConv2d(in_channels, out_channels, 3, stride, bias=False, between=between), _bn_relu6(out_channels)
    )


@register_model(
    "mobilenet_v1",
    preprocessing=Preprocessing(input_size=224, crop_pct=0.875, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    description="MobileNet v1: 13 depthwise separable layers, strided instead of pooled; width=0.25..1.0",
    family="mobilenet",
    reference_params={"num_classes": 1000, "params": 4_253_864, "source": "Keras applications table (003 notes)"},
)
def mobilenet_v1(
    num_classes: int, pretrained: bool = False, input_size: int = 224, dropout: float = 0.001, width: float = 1.0
) -> Classifier:
    """``width`` (Keras' alpha) scales every layer's channels, trading accuracy for size and speed.

    The default head dropout of 1e-3 is Keras'.
    """
    if not 0.25 <= width <= 1.0:
        raise CnnkitError(f"mobilenet_v1 width must be between 0.25 and 1.0, not {width}")
    stem_channels = int(32 * width)
    layers: list[nn.Module] = [nn.Conv2d(3, stem_channels, 3, 2, padding=1, bias=False), _bn_relu6(stem_channels)]
    in_channels = stem_channels
    for channels, stride in _MOBILENET_V1_LAYERS:
        out_channels = int(channels * width)
        layers.append(_separable_layer(in_channels, out_channels, stride))
        in_channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), linear_head(in_channels, num_classes, dropout), in_channels)
