"""Right-sized inputs (issue 20): the input size comes from the data, small images get a small stem,
and the fast small-image recipe (compact_resnet, one-cycle, label smoothing, shift_flip, flip TTA) trains."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.data import load_dataset
from cnnkit.data.sizes import SizeSurvey, survey_sizes
from cnnkit.data.transforms import train_transform
from cnnkit.models.config import Preprocessing
from cnnkit.models.registry import get_model_info
from cnnkit.train.input_size import choose_input_size
from tests.conftest import write_images, write_shapes_dataset


def survey(short: int) -> SizeSurvey:
    return SizeSurvey(short_side=short, long_side=short, sampled=10)


@pytest.mark.parametrize(
    ("model", "short", "pretrained", "given", "size", "stem"),
    [
        ("resnet18", 32, False, None, 32, True),  # CIFAR-sized: not upsampled, small stem
        ("resnet18", 600, False, None, 224, False),  # large photos: the model's default
        ("resnet18", 100, False, None, 104, False),  # a multiple of 8, above the small-stem range
        ("plain_cnn", 48, False, None, 48, False),  # no small-stem option
        ("lenet5", 8, False, None, 28, False),  # built for small images: its own size
        ("efficientnet_lite0", 600, True, None, 224, False),  # pretrained on large photos: pretrained size
        ("efficientnet_lite0", 128, True, None, 160, False),  # small photos: x1.25 in steps of 32
        ("efficientnet_lite0", 40, True, None, 128, False),  # never below 128 px for pretrained filters
        ("resnet18", 600, False, 40, 40, True),  # --image-size wins, and gets the stem it implies
        ("efficientnet_lite0", 40, True, 300, 300, False),
    ],
)
def test_input_size_rules(model: str, short: int, pretrained: bool, given, size: int, stem: bool) -> None:
    choice = choose_input_size(get_model_info(model), survey(short), pretrained, given)
    assert (choice.size, choice.small_input_stem) == (size, stem), choice.reason
    assert choice.reason


def test_survey_reads_headers_of_large_photos(tmp_path: Path) -> None:
    for label in ("a", "b"):
        write_images(tmp_path / label, 3, size=(450, 600), suffix=".jpg")
    dataset = load_dataset(tmp_path, val_split=0.3, test_split=0.0)
    found = survey_sizes(dataset.train)
    assert (found.short_side, found.long_side) == (450, 600)
    choice = choose_input_size(get_model_info("efficientnet_lite0"), found, pretrained=True, given=None)
    assert choice.size == 224


@pytest.fixture(scope="module")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes32"), per_class=30, size=32)


def test_32px_folder_trains_at_32px_with_the_small_stem_and_reloads(tmp_path: Path) -> None:
    small_images = write_shapes_dataset(tmp_path / "data", per_class=6, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(small_images, model="resnet18", epochs=1, progress=False, out=tmp_path / "run")
    assert run.preprocessing.input_size == 32
    assert run.facts.model_kwargs == {"small_input": True}
    assert "not upsampled" in run.facts.input_size_reason
    reloaded = cnnkit.load_run(tmp_path / "run").load_model()
    assert reloaded.features.conv1.kernel_size == (3, 3)
    assert isinstance(reloaded.features.maxpool, torch.nn.Identity)
    image = next((small_images / "disc").glob("*.png"))
    predictions = cnnkit.predict([image], run=tmp_path / "run")
    assert predictions[0]["predictions"][0]["label"] in run.classes


def test_image_size_option_wins_over_the_data(
    small_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from tests.test_cli import run_main

    code, _, _ = run_main(
            monkeypatch, capsys, "train", str(small_images), "--model", "plain_cnn", "--epochs", "1",
            "--image-size", "40", "--out", str(tmp_path / "run"), "--json",
    )  # fmt: skip
    assert code == 0
    run = cnnkit.load_run(tmp_path / "run")
    assert run.preprocessing.input_size == 40
    assert run.facts.input_size_reason == "given by --image-size"


def test_shift_flip_moves_whole_pixels_only() -> None:
    preprocessing = Preprocessing(input_size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    augment = train_transform(preprocessing, "shift_flip")
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    outputs = [augment(image) for _ in range(20)]
    allowed = set(image.flatten().tolist())
    as_bytes = [(output * 255).round().to(torch.uint8) for output in outputs]
    for output in as_bytes:
        assert output.shape == (3, 32, 32)
        assert set(output.flatten().tolist()) <= allowed  # no resampling: every value is one of the input's
    assert sum(not torch.equal(output, image) for output in as_bytes) >= 15


def test_fast_small_image_recipe_learns_shapes(small_images: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(
            small_images, model="compact_resnet", epochs=8, patience=8, batch_size=16, optimizer="sgd", lr=0.1,
            weight_decay=5e-4, schedule="one_cycle", label_smoothing=0.2, augment="shift_flip", test_tta="flip",
            progress=False, out=tmp_path / "run",
        )  # fmt: skip
    rates = [row["lr"] for row in run.history]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1 and rates[-1] < rates[peak] / 10  # warmed up, then annealed
    assert run.metrics["test_tta"] == "flip"
    assert run.config.optimizer == "sgd"
    assert run.metrics["val_accuracy"] >= 0.8
    with Image.open(next((small_images / "square").glob("*.png"))) as image:
        assert image.size == (32, 32)


def test_patch_whitening_decorrelates_the_first_training_batch_and_keeps_its_filters() -> None:
    from cnnkit.models.compact import PatchWhitening

    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.randn(64, 3, 8, 8), size=32, mode="bilinear")  # correlated pixels
    images = smooth + 0.5 * smooth.mean(dim=1, keepdim=True) + 0.1 * torch.randn(64, 3, 32, 32)  # and channels
    layer = PatchWhitening()
    layer.eval()
    layer(images)
    assert not layer.fitted  # evaluation never fits
    layer.train()
    layer(images)
    assert layer.fitted and not layer.conv.weight.requires_grad
    responses = (layer(images) - layer.conv.bias[:, None, None])[:, :12].permute(1, 0, 2, 3).flatten(1)
    covariance = responses @ responses.T / responses.shape[1]
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)  # unit variance, no correlation
    reloaded = PatchWhitening()
    reloaded.load_state_dict(layer.state_dict())
    reloaded.train()
    reloaded(torch.rand(4, 3, 32, 32))  # a resumed run's next batch must not refit the filters
    assert torch.equal(reloaded.conv.weight, layer.conv.weight)
