"""Models: the registry, the Classifier shape, building blocks, the MAC counter and the Keras-style summary."""

from cnnkit.models.blocks import FireModule, InceptionModule, LocalResponseNorm, ResidualUnit, SEBlock, SeparableConv2d
from cnnkit.models.classifier import Classifier, GlobalAvgPool2d, linear_head, mlp_head, set_batchnorm_eval
from cnnkit.models.config import ModelInfo, Preprocessing
from cnnkit.models.flops import count_macs
from cnnkit.models.imagenet import imagenet_classes
from cnnkit.models.registry import create_model, get_model_info, list_models, register_model
from cnnkit.models.summary import Summary, summarize

__all__ = [
    "Classifier",
    "FireModule",
    "GlobalAvgPool2d",
    "InceptionModule",
    "LocalResponseNorm",
    "ModelInfo",
    "Preprocessing",
    "ResidualUnit",
    "SEBlock",
    "SeparableConv2d",
    "Summary",
    "count_macs",
    "create_model",
    "get_model_info",
    "imagenet_classes",
    "linear_head",
    "list_models",
    "mlp_head",
    "register_model",
    "set_batchnorm_eval",
    "summarize",
]
