"""Turn a torchvision or timm network into a :class:`Classifier` by cutting off its last dense layer.

The network with that layer replaced by ``Identity`` becomes ``features`` (it now returns the
pooled pre-logits vector, with the library's own dropout kept), and the layer itself, or a fresh
one for another number of classes, becomes ``head``. State dicts in the library's own layout
(files from torchvision or timm) still load into the wrapped model.
"""

from __future__ import annotations

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier, linear_head


def classifier_from_network(
    network: nn.Module, head_path: str, num_classes: int, keep_imagenet_head: bool, dropout: float = 0.0
) -> Classifier:
    """Split ``network`` at the dense layer ``head_path`` (a dotted submodule name such as ``classifier.6``).

    ``keep_imagenet_head`` keeps the trained layer when it already has ``num_classes`` outputs.
    """
    imagenet_head = network.get_submodule(head_path)
    if not isinstance(imagenet_head, nn.Linear):
        raise CnnkitError(
            f"{type(network).__name__} ends in a {type(imagenet_head).__name__}, not a dense layer; "
            "pick a model whose classifier is nn.Linear"
        )
    parent_path, _, attribute = head_path.rpartition(".")
    setattr(network.get_submodule(parent_path), attribute, nn.Identity())
    head = linear_head(imagenet_head.in_features, num_classes, dropout)
    if keep_imagenet_head and imagenet_head.out_features == num_classes:
        head[-1] = imagenet_head
    model = Classifier(network, head, imagenet_head.in_features)
    model.native_layout = (head_path, f"head.{len(head) - 1}")
    model.register_load_state_dict_pre_hook(_native_layout_loader(*model.native_layout))
    return model


def wrapped_layout(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` with the library's keys (``fc.weight``) renamed to the wrapped ones, when it has them."""
    renamed = dict(state_dict)
    native_layout = getattr(model, "native_layout", None)
    if native_layout is not None:
        _rename(renamed, model.state_dict().keys(), *native_layout)
    return renamed


def _rename(state_dict: dict, own_keys, native_head: str, wrapped_head: str) -> None:
    if all(key in own_keys for key in state_dict):
        return
    for key in list(state_dict):
        if key.startswith(native_head + "."):
            state_dict[wrapped_head + key[len(native_head) :]] = state_dict.pop(key)
        else:
            state_dict["features." + key] = state_dict.pop(key)


def _native_layout_loader(native_head: str, wrapped_head: str):
    """A load hook that renames the library's keys (``fc.weight``) to the wrapped ones (``head.0.weight``)."""

    def rename(module: nn.Module, state_dict: dict, prefix: str, *_args) -> None:
        if not prefix:
            _rename(state_dict, module.state_dict().keys(), native_head, wrapped_head)

    return rename
