"""The ImageNet classics torchvision implements, registered as cnnkit models.

torchvision supplies the architecture, the evaluation preprocessing, the ImageNet accuracy and
the weights' address; :mod:`cnnkit.models.wrapping` turns each network into a Classifier. Weights
are read from the torch hub cache only (see :mod:`cnnkit.models.weights_cache`).
"""

from __future__ import annotations

from typing import Any

import torchvision.models
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.blocks import LocalResponseNorm
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import Preprocessing
from cnnkit.models.registration import register_model
from cnnkit.models.weights_cache import find_cached_weights, locate_weights
from cnnkit.models.wrapping import classifier_from_network

KERAS_TABLE = "Keras applications table (003 notes)"

# GoogLeNet and Inception v3 train with auxiliary side classifiers that inference and transfer
# learning never use, so they are left out (``init_weights`` only silences a torchvision warning).
_NO_AUXILIARY = {"aux_logits": False, "init_weights": True}


def _weights(name: str) -> Any:
    return torchvision.models.get_model_weights(name).DEFAULT


def _registration(name: str, family: str, description: str, keras_params: int | None = None) -> dict[str, Any]:
    """``register_model`` arguments taken from torchvision's weight metadata.

    The reference parameter count is the notes' Keras figure when the table lists the model,
    otherwise torchvision's own.
    """
    weights = _weights(name)
    transform = weights.transforms()
    preprocessing = Preprocessing(
        input_size=transform.crop_size[0],
        crop_pct=transform.crop_size[0] / transform.resize_size[0],
        interpolation=transform.interpolation.value,
        mean=tuple(transform.mean),
        std=tuple(transform.std),
    )
    if keras_params is None:
        reference = {
            "num_classes": 1000,
            "params": weights.meta["num_params"],
            "source": "torchvision weights metadata",
        }
    else:
        reference = {"num_classes": 1000, "params": keras_params, "source": KERAS_TABLE}
    return {
        "preprocessing": preprocessing,
        "description": description,
        "pretrained": "online",
        "family": family,
        "imagenet_top1": weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
        "reference_params": reference,
        "weights_found": lambda: locate_weights("torchvision", weights.url),
    }


def torchvision_network(name: str, pretrained: bool, **scratch_kwargs: Any) -> nn.Module:
    """Build torchvision's ``name``, with the default ImageNet weights when they are cached (or may be downloaded).

    ``scratch_kwargs`` apply only without weights: torchvision fixes those arguments itself when it loads them.
    """
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, **scratch_kwargs)
    weights = _weights(name)
    find_cached_weights(name, weights.url)
    network = torchvision.models.get_model(name, weights=weights)
    if getattr(network, "aux_logits", False):  # Inception v3 keeps its side classifier with weights
        network.aux_logits = False
        network.AuxLogits = None
    return network


def _register_plain(
    name: str, head_path: str, family: str, description: str, keras_params: int | None = None, **scratch_kwargs: Any
) -> None:
    """Register a torchvision model that needs nothing beyond the split at its last dense layer."""
    defaults = _registration(name, family, description, keras_params)

    @register_model(name, **defaults)
    def builder(
        num_classes: int,
        pretrained: bool = False,
        input_size: int = defaults["preprocessing"].input_size,
        dropout: float = 0.0,
    ) -> Classifier:
        network = torchvision_network(name, pretrained, **scratch_kwargs)
        return classifier_from_network(network, head_path, num_classes, pretrained, dropout)


_register_plain("vgg16", "classifier.6", "vgg", "VGG-16: 13 3x3 convs in 5 blocks, dense 4096-4096", 138_357_544)
_register_plain("vgg19", "classifier.6", "vgg", "VGG-19: 16 3x3 convs in 5 blocks, dense 4096-4096", 143_667_240)
_register_plain(
    "googlenet",
    "fc",
    "inception",
    "GoogLeNet (Inception v1, with BatchNorm): 9 inception modules, global average pooling",
    **_NO_AUXILIARY,
)
_register_plain(
    "inception_v3", "fc", "inception", "Inception v3: factorized inception modules, 299 px", 23_851_784, **_NO_AUXILIARY
)
_register_plain(
    "mobilenet_v2", "classifier.1", "mobilenet", "MobileNet v2: inverted residuals with linear bottlenecks", 3_538_984
)
_register_plain(
    "mobilenet_v3_small", "classifier.3", "mobilenet", "MobileNet v3 small: NAS-found blocks, SE, hard-swish"
)
_register_plain(
    "mobilenet_v3_large", "classifier.3", "mobilenet", "MobileNet v3 large: NAS-found blocks, SE, hard-swish"
)
_register_plain(
    "densenet121", "classifier", "densenet", "DenseNet-121: 4 dense blocks, each layer sees all earlier maps", 8_062_504
)


def _register_resnet(name: str, description: str, keras_params: int | None = None) -> None:
    """A torchvision ResNet; ``small_input=True`` (from scratch only) swaps the stem for small images.

    The small-input stem is the usual one for 32 px data: a 3x3 stride-1 first convolution and no
    max-pooling after it, so the first residual stage sees 32 x 32 maps instead of 8 x 8.
    """
    defaults = _registration(name, "resnet", description, keras_params)

    @register_model(name, **defaults)
    def builder(
        num_classes: int,
        pretrained: bool = False,
        input_size: int = defaults["preprocessing"].input_size,
        dropout: float = 0.0,
        small_input: bool = False,
    ) -> Classifier:
        if small_input and pretrained:
            raise CnnkitError(
                f"{name}'s pretrained weights need its ImageNet stem; small_input is for training from scratch"
            )
        network = torchvision_network(name, pretrained)
        if small_input:
            network.conv1 = nn.Conv2d(3, network.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            network.maxpool = nn.Identity()
        return classifier_from_network(network, "fc", num_classes, pretrained, dropout)


_register_resnet("resnet18", "ResNet-18: 2-2-2-2 basic residual units of 64-128-256-512 maps")
_register_resnet("resnet34", "ResNet-34: 3-4-6-3 basic residual units of 64-128-256-512 maps")
_register_resnet("resnet50", "ResNet-50: 3-4-6-3 bottleneck residual units", 25_636_712)
_register_resnet("resnet152", "ResNet-152: 3-8-36-3 bottleneck residual units", 60_419_944)


_ALEXNET = _registration(
    "alexnet",
    "alexnet",
    "AlexNet (torchvision's one-GPU variant: convs 64-192-384-256-256, dense 4096-4096); lrn=True adds LRN",
)


@register_model("alexnet", **_ALEXNET)
def alexnet(
    num_classes: int, pretrained: bool = False, input_size: int = 224, dropout: float = 0.0, lrn: bool = False
) -> Classifier:
    """``lrn=True`` puts the paper's local response normalization after the first two ReLUs.

    Keras/TF's ``depth_radius=2`` (2 maps each side, 5 in all) is torch's ``size=5``; see
    :class:`LocalResponseNorm` for the alpha conversion. torchvision's weights were trained
    without LRN, so the two options do not mix.
    """
    if lrn and pretrained:
        raise CnnkitError("the pretrained AlexNet weights were trained without LRN; use lrn=False with pretrained=True")
    network = torchvision_network("alexnet", pretrained)
    if lrn:
        for relu_index in (1, 4):  # replaced in place, so the weight names stay torchvision's
            network.features[relu_index] = nn.Sequential(
                nn.ReLU(inplace=True), LocalResponseNorm(depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75)
            )
    return classifier_from_network(network, "classifier.6", num_classes, pretrained, dropout)


_SQUEEZENET = _registration(
    "squeezenet1_1",
    "squeezenet",
    "SqueezeNet 1.1: 8 fire modules; ImageNet head applied after pooling (see docs)",
)


@register_model("squeezenet1_1", **_SQUEEZENET)
def squeezenet1_1(
    num_classes: int, pretrained: bool = False, input_size: int = 224, dropout: float = 0.0
) -> Classifier:
    """SqueezeNet classifies with a 1x1 convolution, a ReLU and global pooling.

    To give it a pooled feature vector like every other model, the pooling moves before the
    classifier, which becomes a dense layer with the same weights (and the same parameter count).
    The ReLU on the class maps is dropped, so pretrained ImageNet scores are close to, not equal
    to, torchvision's; transfer learning only uses the fire modules and is unaffected.
    """
    network = torchvision_network("squeezenet1_1", pretrained)
    dropout_layer, class_conv = network.classifier[0], network.classifier[1]
    dense = nn.Linear(class_conv.in_channels, class_conv.out_channels)
    dense.weight.data.copy_(class_conv.weight.data.flatten(1))
    dense.bias.data.copy_(class_conv.bias.data)
    network.classifier = nn.Sequential(dropout_layer, nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense)
    return classifier_from_network(network, "classifier.3", num_classes, pretrained, dropout)
