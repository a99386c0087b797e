"""The shape every cnnkit model has: a feature extractor and a head.

Splitting the network this way is what makes transfer learning one flag: freeze ``features``
and train ``head``; cache ``features(x)`` and train the head on the cache; unfreeze the top of
``features`` to fine-tune.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``features`` maps images (N, C, H, W) to vectors (N, F); ``head`` maps them to logits."""

    def __init__(self, features: nn.Module, head: nn.Module, num_features: int) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def num_classes(self) -> int:
        last = [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1]
        return last.out_features


class GlobalAvgPool2d(nn.Module):
    """Average each feature map to one number: (N, C, H, W) -> (N, C), like Keras' GlobalAveragePooling2D."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def linear_head(num_features: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Dropout then a dense layer: the notes' logistic-regression head (softmax lives in the loss)."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    layers.append(nn.Linear(num_features, num_classes))
    return nn.Sequential(*layers)


def mlp_head(num_features: int, num_classes: int, hidden: int = 128, dropout: float = 0.5) -> nn.Sequential:
    """Dense + ReLU + dropout + dense, the notes' two-layer head."""
    return nn.Sequential(
        nn.Linear(num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )


HEADS = ("linear", "mlp")


def feature_blocks(features: nn.Module) -> list[nn.Module]:
    """The base's trainable blocks, input to output, for unfreezing the top N.

    Top-level layers count one each, except containers of stages (timm's ``blocks``, a
    Sequential of Sequentials), which count each block inside each stage. A normalization layer
    belongs to the block before it (a conv and its BatchNorm are one block).
    """
    blocks: list[nn.Module] = []
    children = list(features.children()) if len(list(features.children())) > 1 else [features]
    for child in children:
        grand = list(child.children())
        if (
            isinstance(child, nn.Sequential | nn.ModuleList)
            and grand
            and all(isinstance(g, nn.Sequential | nn.ModuleList) for g in grand)
        ):
            blocks.extend(block for stage in grand for block in stage.children())
        elif isinstance(child, nn.Sequential) and len(children) == 1:
            blocks.extend(grand)
        else:
            blocks.append(child)
    grouped: list[nn.Module] = []
    for block in (b for b in blocks if any(True for _ in b.parameters())):
        if grouped and "Norm" in type(block).__name__:
            grouped[-1] = nn.ModuleList([grouped[-1], block])
        else:
            grouped.append(block)
    return grouped


def set_batchnorm_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer in inference mode so its running statistics stay frozen."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _layers_in_order(module: nn.Module) -> list[nn.Module]:
    """Children in definition order, nested Sequentials (stages) opened up, Identity dropped."""
    layers: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.Sequential):
            layers.extend(_layers_in_order(child))
        elif not isinstance(child, nn.Identity):
            layers.append(child)
    return layers


@torch.no_grad()
def split_frozen_prefix(features: nn.Module, input_size: int, channels: int = 3) -> tuple[nn.Module, nn.Module]:
    """Split ``features`` into (frozen prefix, rest) at the first layer with a trainable parameter.

    While the prefix stays frozen (BatchNorm included), its output for a given image never
    changes, so it can be computed once and cached while the rest fine-tunes. The split only
    holds when running the layers one after another is what ``features.forward`` does in
    training mode (a dropout outside any layer breaks it); that is checked on a probe image, and
    when it does not hold (or nothing is frozen) the prefix is empty (``nn.Identity``) and the
    rest is ``features`` itself.
    """
    layers = _layers_in_order(features)
    trainable = [i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())]
    whole = (nn.Identity(), features)
    if not trainable or trainable[0] == 0:
        return whole
    prefix, rest = nn.Sequential(*layers[: trainable[0]]), nn.Sequential(*layers[trainable[0] :])
    was_training = features.training
    features.train()  # as fine-tuning runs it: dropout on, BatchNorm frozen
    set_batchnorm_eval(features)
    try:
        probe = torch.randn(2, channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            expected = features(probe)
            torch.manual_seed(0)
            got = rest(prefix(probe))
        if got.ndim > expected.ndim:  # torchvision flattens in forward(), outside any layer
            rest.append(nn.Flatten(1))
            got = got.flatten(1)
        same = got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    except (RuntimeError, TypeError):  # a layer that needs more than the previous layer's output
        same = False
    features.train(was_training)
    return (prefix, rest) if same else whole
