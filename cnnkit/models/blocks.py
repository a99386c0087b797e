"""Building blocks of the classic convnets, ready to compose into your own architectures.

Each block is an ``nn.Module`` taking and returning NCHW tensors. They follow the notes' Keras
recipes (fire module, inception module, residual unit, squeeze-and-excitation, separable
convolution, local response normalization), so a Keras design translates block for block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FireModule(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands side by side.

    The squeeze keeps the 3x3 expand cheap; the output has ``2 * expand`` channels.
    """

    def __init__(self, in_channels: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_channels, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True))
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze(x)
        return torch.cat([self.expand1x1(squeezed), self.expand3x3(squeezed)], dim=1)


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding="same"), nn.ReLU(inplace=True))


class InceptionModule(nn.Module):
    """GoogLeNet's inception module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches, concatenated.

    Every branch keeps the spatial size (stride 1, "same" padding), so the outputs stack along
    channels: ``ch1x1 + ch3x3 + ch5x5 + pool_proj`` of them. The 1x1 reductions are bottlenecks
    that cut the cost of the wide kernels (see :func:`cnnkit.models.flops.count_macs`).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1x1 = _conv_relu(in_channels, ch1x1, 1)
        self.branch3x3 = nn.Sequential(_conv_relu(in_channels, ch3x3_reduce, 1), _conv_relu(ch3x3_reduce, ch3x3, 3))
        self.branch5x5 = nn.Sequential(_conv_relu(in_channels, ch5x5_reduce, 1), _conv_relu(ch5x5_reduce, ch5x5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_relu(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class ResidualUnit(nn.Module):
    """ResNet's residual unit: ``relu(main(x) + shortcut(x))``.

    The plain unit (ResNet-18/34) stacks two 3x3 conv+BN layers with ``filters`` maps; the
    bottleneck unit (ResNet-50/152) does 1x1 -> 3x3 -> 1x1 and outputs ``4 * filters`` maps. When
    the stride or the depth changes, the input cannot be added as is, so the shortcut becomes a
    1x1 convolution with the same stride (plus BN) that reshapes it.
    """

    expansion_of_bottleneck = 4

    def __init__(self, in_channels: int, filters: int, stride: int = 1, bottleneck: bool = False) -> None:
        super().__init__()
        if bottleneck:
            self.out_channels = filters * self.expansion_of_bottleneck
            self.main = nn.Sequential(
                _conv_bn(in_channels, filters, 1),
                nn.ReLU(inplace=True),
                _conv_bn(filters, filters, 3, stride),
                nn.ReLU(inplace=True),
                _conv_bn(filters, self.out_channels, 1),
            )
        else:
            self.out_channels = filters
            self.main = nn.Sequential(
                _conv_bn(in_channels, filters, 3, stride), nn.ReLU(inplace=True), _conv_bn(filters, filters, 3)
            )
        reshapes = stride != 1 or in_channels != self.out_channels
        self.shortcut = _conv_bn(in_channels, self.out_channels, 1, stride) if reshapes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.main(x) + self.shortcut(x))


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a weight learned from all channels' means.

    Global average pooling squeezes each map to one number, a dense layer ``ratio`` times
    narrower with ReLU and a dense sigmoid layer turn those into per-channel weights in (0, 1).
    """

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.excite = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.excite(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution: one spatial filter per input channel, then a 1x1 across channels.

    It assumes spatial and cross-channel patterns can be learned separately, which needs far
    fewer weights than a full convolution. Xception puts nothing between the two steps (the
    default); MobileNet v1 passes ``between=nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = True,
        between: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.between = between if between is not None else nn.Identity()
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.between(self.depthwise(x)))


class LocalResponseNorm(nn.Module):
    """Local response normalization with TensorFlow's parameters (``tf.nn.local_response_normalization``).

    ``out = x / (bias + alpha * sum(x_j ** 2)) ** beta``, the sum running over channels
    ``c - depth_radius .. c + depth_radius``. PyTorch's ``nn.LocalResponseNorm`` takes the window
    width ``size`` and *averages* the squares, so this is ``size = 2 * depth_radius + 1`` and
    ``alpha_torch = alpha * size``. AlexNet in the notes: depth_radius 2, alpha 2e-5, beta 0.75, bias 1.
    """

    def __init__(self, depth_radius: int = 5, bias: float = 1.0, alpha: float = 1.0, beta: float = 0.5) -> None:
        super().__init__()
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = 2 * self.depth_radius + 1
        return F.local_response_norm(x, size, alpha=self.alpha * size, beta=self.beta, k=self.bias)

    def extra_repr(self) -> str:
        return f"depth_radius={self.depth_radius}, bias={self.bias}, alpha={self.alpha}, beta={self.beta}"
