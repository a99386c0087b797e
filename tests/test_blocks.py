"""The public building blocks: shapes, parameter counts against known architectures, exact semantics."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnkit.models import FireModule, InceptionModule, LocalResponseNorm, ResidualUnit, SEBlock, SeparableConv2d


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fire_module_concatenates_both_expands_and_matches_torchvision():
    fire = FireModule(96, squeeze=16, expand=64)
    out = fire(torch.randn(2, 96, 13, 13))
    assert out.shape == (2, 128, 13, 13)
    assert fire.out_channels == 128
    assert count_params(fire) == count_params(torchvision.models.squeezenet.Fire(96, 16, 64, 64))
    assert (out >= 0).all()  # both branches end in ReLU


def test_inception_module_keeps_size_and_stacks_branches():
    # GoogLeNet's inception (3a): 192 maps in, 64 + 128 + 32 + 32 = 256 out.
    module = InceptionModule(192, 64, 96, 128, 16, 32, 32)
    out = module(torch.randn(1, 192, 28, 28))
    assert out.shape == (1, 256, 28, 28)
    weights_and_biases = [
        192 * 64 + 64,  # 1x1
        192 * 96 + 96,  # 1x1 reduce before 3x3
        96 * 128 * 9 + 128,  # 3x3
        192 * 16 + 16,  # 1x1 reduce before 5x5
        16 * 32 * 25 + 32,  # 5x5
        192 * 32 + 32,  # 1x1 after the 3x3 max-pool
    ]
    assert count_params(module) == sum(weights_and_biases) == 163_696


def test_residual_unit_adds_identity_when_shapes_match():
    unit = ResidualUnit(64, 64)
    assert isinstance(unit.shortcut, nn.Identity)
    x = torch.randn(2, 64, 8, 8)
    unit.eval()
    with torch.no_grad():
        assert torch.allclose(unit(x), torch.relu(unit.main(x) + x))


@pytest.mark.parametrize(("bottleneck", "out_channels"), [(False, 128), (True, 512)])
def test_residual_unit_projects_shortcut_with_strided_1x1_when_shape_changes(bottleneck, out_channels):
    unit = ResidualUnit(64, 128, stride=2, bottleneck=bottleneck)
    projection = unit.shortcut[0]
    assert (projection.kernel_size, projection.stride, projection.out_channels) == ((1, 1), (2, 2), out_channels)
    assert unit(torch.randn(2, 64, 8, 8)).shape == (2, out_channels, 4, 4)


def resnet_from_units(depths: tuple[int, ...], bottleneck: bool) -> nn.Sequential:
    """The notes' recipe: 7x7 stem, residual units doubling the maps and halving the size per stage, GAP, dense."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    in_channels = 64
    for stage, depth in enumerate(depths):
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            unit = ResidualUnit(in_channels, 64 * 2**stage, stride, bottleneck)
            layers.append(unit)
            in_channels = unit.out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, 1000)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    ("depths", "bottleneck", "torchvision_name"),
    [((3, 4, 6, 3), False, "resnet34"), ((3, 4, 6, 3), True, "resnet50")],
)
def test_residual_units_rebuild_torchvision_resnets_exactly(depths, bottleneck, torchvision_name):
    ours = resnet_from_units(depths, bottleneck)
    reference = torchvision.models.get_model_weights(torchvision_name).DEFAULT.meta["num_params"]
    assert count_params(ours) == reference
    assert ours(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_se_block_scales_each_channel_by_a_weight_between_0_and_1():
    block = SEBlock(256, ratio=16)
    assert count_params(block) == (256 * 16 + 16) + (16 * 256 + 256)
    x = torch.rand(2, 256, 5, 5) + 0.1
    scale = block(x) / x
    per_channel = scale[:, :, :1, :1]
    assert torch.allclose(scale, per_channel.expand_as(scale), atol=1e-6)
    assert ((per_channel > 0) & (per_channel < 1)).all()


def test_separable_conv_is_depthwise_then_pointwise():
    conv = SeparableConv2d(32, 64, kernel_size=3, stride=2)
    assert count_params(conv) == 3 * 3 * 32 + (32 * 64 + 64)
    x = torch.randn(1, 32, 16, 16)
    expected = nn.functional.conv2d(
        nn.functional.conv2d(x, conv.depthwise.weight, stride=2, padding=1, groups=32),
        conv.pointwise.weight,
        conv.pointwise.bias,
    )
    assert torch.allclose(conv(x), expected, atol=1e-5)


def test_separable_conv_applies_the_layer_between_its_two_steps():
    between = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU())
    conv = SeparableConv2d(8, 16, bias=False, between=between).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(conv(x), conv.pointwise(between(conv.depthwise(x))))


def tf_local_response_norm(x: torch.Tensor, depth_radius: int, bias: float, alpha: float, beta: float) -> torch.Tensor:
    """TensorFlow's documented formula, written out channel by channel."""
    channels = x.shape[1]
    out = torch.empty_like(x)
    for c in range(channels):
        window = x[:, max(0, c - depth_radius) : min(channels, c + depth_radius + 1)]
        out[:, c] = x[:, c] / (bias + alpha * (window**2).sum(dim=1)) ** beta
    return out


@pytest.mark.parametrize(
    ("depth_radius", "bias", "alpha", "beta"),
    [(2, 1.0, 2e-5, 0.75), (2, 1.0, 0.3, 0.75), (1, 2.0, 0.5, 0.5)],
)
def test_local_response_norm_follows_tensorflow(depth_radius, bias, alpha, beta):
    x = torch.randn(2, 7, 3, 3) * 3
    ours = LocalResponseNorm(depth_radius, bias, alpha, beta)(x)
    assert torch.allclose(ours, tf_local_response_norm(x, depth_radius, bias, alpha, beta), atol=1e-5)
