"""Small convnets from the notes, meant to be trained from scratch."""

from __future__ import annotations

from torch import nn

from cnnkit.models.classifier import Classifier, GlobalAvgPool2d, linear_head
from cnnkit.models.config import Preprocessing
from cnnkit.models.registration import register_model


def conv_relu(in_channels: int, out_channels: int, kernel_size: int = 3, padding: str | int = "same") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding), nn.ReLU(inplace=True))


@register_model(
    "plain_cnn",
    preprocessing=Preprocessing(input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    description="The plain convnet: 4 pairs of 3x3 convs (32-64-128-256), max-pooling, global average pooling, dense",
    family="plain",
    reference_params={"num_classes": 20, "params": 1_177_396, "source": "001 notes (Keras summary)"},
)
def plain_cnn(num_classes: int, pretrained: bool = False, input_size: int = 224, dropout: float = 0.0) -> Classifier:
    """Works at any input size thanks to global average pooling."""
    widths = (32, 64, 128, 256)
    layers: list[nn.Module] = []
    in_channels = 3
    for i, width in enumerate(widths):
        layers += [conv_relu(in_channels, width), conv_relu(width, width)]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        in_channels = width
    layers.append(GlobalAvgPool2d())
    return Classifier(nn.Sequential(*layers), linear_head(in_channels, num_classes, dropout), in_channels)


@register_model(
    "lenet5",
    preprocessing=Preprocessing(input_size=28, channels=1, mean=(0.0,), std=(1.0,)),
    description="LeNet-5 variant for MNIST: conv 32 5x5 same, avg-pool, conv 48 5x5, avg-pool, dense 256-84",
    family="lenet",
    reference_params={"num_classes": 10, "params": 369_174, "source": "002 notes (Keras model)"},
)
def lenet5(num_classes: int, pretrained: bool = False, input_size: int = 28, dropout: float = 0.0) -> Classifier:
    side = ((input_size // 2) - 4) // 2
    if side < 1:
        from cnnkit.errors import CnnkitError

        raise CnnkitError(f"lenet5 needs --image-size of at least 12, not {input_size}")
    features = nn.Sequential(
        conv_relu(1, 32, 5, padding="same"),
        nn.AvgPool2d(2),
        conv_relu(32, 48, 5, padding=0),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(48 * side * side, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, 84),
        nn.ReLU(inplace=True),
    )
    return Classifier(features, linear_head(84, num_classes, dropout), 84)
