"""count_macs: the notes' bottleneck arithmetic and torchvision's published GFLOPS figures."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnkit.models import SeparableConv2d, count_macs, create_model


def test_direct_3x3_convolution_costs_what_the_notes_say():
    # 3 * 3 * 192 * 256 multiplications at each of 32 * 32 positions
    assert count_macs(nn.Conv2d(192, 256, 3, padding=1), input_size=32, channels=192) == 452_984_832


def test_1x1_bottleneck_halves_the_cost():
    bottleneck = nn.Sequential(nn.Conv2d(192, 96, 1), nn.Conv2d(96, 256, 3, padding=1))
    # (1 * 1 * 192 * 96 + 3 * 3 * 96 * 256) * 32 * 32
    assert count_macs(bottleneck, input_size=32, channels=192) == 245_366_784


def test_depthwise_convolution_counts_one_filter_per_channel():
    conv = SeparableConv2d(32, 64, stride=2)
    # depthwise 3 * 3 * 32 at 8 * 8 positions, then pointwise 32 * 64 at the same positions
    assert count_macs(conv, input_size=16, channels=32) == (9 * 32 + 32 * 64) * 8 * 8


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_matches_torchvision_published_gflops(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    model = torchvision.models.get_model(name)
    assert round(count_macs(model, 224) / 1e9, 3) == weights.meta["_ops"]


def test_leaves_the_model_as_it_found_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    model.train()
    count_macs(model, 8)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(("width", "millions"), [(1.0, 569), (0.75, 325), (0.5, 149), (0.25, 41)])
def test_mobilenet_v1_mult_adds_match_the_paper(width, millions):
    """MobileNet paper, table 6: millions of mult-adds of 224 px MobileNets by width multiplier."""
    assert round(count_macs(create_model("mobilenet_v1", width=width), 224) / 1e6) == millions
