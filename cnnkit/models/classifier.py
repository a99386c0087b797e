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


def set_batchnorm_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer in inference mode so its running statistics stay frozen."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
