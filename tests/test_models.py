"""Foundation models: the notes' parameter counts and output shapes, pretrained weights offline."""

from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.models import create_model, summarize
from cnnkit.models.efficientnet import checkpoint_path, convert_lukemelas_keys

# Output shapes of the plain convnet at 224x224x3 with 20 classes, as the notes' Keras summary lists them.
PLAIN_CNN_SHAPES = [
    ((224, 224, 32), 896), ((224, 224, 32), 9248), ((112, 112, 32), 0),
    ((112, 112, 64), 18496), ((112, 112, 64), 36928), ((56, 56, 64), 0),
    ((56, 56, 128), 73856), ((56, 56, 128), 147584), ((28, 28, 128), 0),
    ((28, 28, 256), 295168), ((28, 28, 256), 590080), ((256,), 0), ((20,), 5140),
]  # fmt: skip


def test_plain_cnn_matches_the_notes_layer_by_layer() -> None:
    summary = summarize(create_model("plain_cnn", 20), 224)
    assert [(tuple(row.output_shape[1:]), row.params) for row in summary.layers] == PLAIN_CNN_SHAPES
    assert summary.total_params == summary.trainable_params == 1_177_396


def test_lenet5_variant_shapes_and_parameters() -> None:
    summary = summarize(create_model("lenet5", 10), 28, channels=1)
    shapes = [tuple(row.output_shape[1:]) for row in summary.layers]
    assert shapes[:4] == [(28, 28, 32), (14, 14, 32), (10, 10, 48), (5, 5, 48)]
    assert shapes[-3:] == [(256,), (84,), (10,)]
    assert summary.total_params == 369_174


def test_frozen_features_are_reported_as_non_trainable() -> None:
    model = create_model("plain_cnn", 20)
    model.features.requires_grad_(False)
    summary = summarize(model, 64)
    assert summary.trainable_params == 5140
    assert summary.non_trainable_params == 1_177_396 - 5140


def test_unknown_model_suggests_a_close_name() -> None:
    with pytest.raises(CnnkitError, match="Did you mean plain_cnn"):
        create_model("plain_cn", 3)


def test_scratch_model_refuses_pretrained() -> None:
    with pytest.raises(CnnkitError, match="no pretrained weights"):
        create_model("lenet5", 10, pretrained=True)


def test_lukemelas_checkpoint_covers_every_timm_tensor() -> None:
    state = torch.load(checkpoint_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    converted = convert_lukemelas_keys(state, [1, 2, 2, 3, 3, 4, 1])
    model = create_model("efficientnet_lite0", 1000)
    expected = {f"features.{k}" if not k.startswith("classifier") else k for k in converted}
    ours = set(model.state_dict())
    assert {k.replace("classifier", "head.1") for k in expected} == ours


def test_new_head_on_pretrained_base_keeps_imagenet_features() -> None:
    imagenet = create_model("efficientnet_lite0", 1000, pretrained=True)
    transfer = create_model("efficientnet_lite0", 5, pretrained=True)
    for (name, a), b in zip(
        imagenet.features.state_dict().items(), transfer.features.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert transfer.num_classes == 5
