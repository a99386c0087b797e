"""Multiply-accumulate count of one forward pass, the cost measure behind the 1x1 bottleneck argument.

Only convolutions and dense layers are counted: they hold nearly all the arithmetic of a convnet,
and this is the convention of the papers and of torchvision's published GFLOPS figures.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnkit.models.probe import probe


def _conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    """k_h * k_w * (c_in / groups) * c_out multiplications for every output position."""
    kernel_h, kernel_w = conv.kernel_size
    per_position = kernel_h * kernel_w * (conv.in_channels // conv.groups) * conv.out_channels
    return per_position * output.shape[-2] * output.shape[-1]


def _linear_macs(linear: nn.Linear, output: torch.Tensor) -> int:
    rows = math.prod(output.shape[1:-1])
    return linear.in_features * linear.out_features * rows


def count_macs(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of ``model`` on one ``channels x input_size x input_size`` image."""
    total = 0

    def add(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output) if isinstance(module, nn.Conv2d) else _linear_macs(module, output)

    hooks = [m.register_forward_hook(add) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    probe(model, hooks, input_size, channels)
    return total
