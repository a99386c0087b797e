"""Looking inside the network: do Grad-CAM, activations and filter patterns show what the model uses?

The localization tests train a small convnet on scenes where the class is decided by one small
object (a cross or a ring) placed at random among distractor blobs that both classes share. A
faithful heatmap must peak on that object; a heatmap from the same network with re-randomized
weights must not resemble it (Adebayo et al., "Sanity checks for saliency maps", 2018).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from cnnkit.cli.main import app, main
from cnnkit.data.transforms import center_crop_resize, crop_box, eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.explain import (
    class_activation_maps,
    explain_image,
    filter_patterns,
    gradcam_overlay,
    layer_activations,
    upsample,
)
from cnnkit.explain.activations import activation_panel
from cnnkit.models.classifier import Classifier, GlobalAvgPool2d, linear_head
from cnnkit.models.config import Preprocessing
from tests.conftest import sklearn_image

SCENE_SIZE = 64
OBJECT_HALF = 6  # objects span 13 x 13 px: 4% of a 64 x 64 scene
CLASSES = ("cross", "ring")

runner = CliRunner()


# --- the localization task -------------------------------------------------------------------


def draw_scene(rng: np.random.Generator, label: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A noisy (64, 64, 3) scene with four distractor blobs and one cross (0) or ring (1).

    Returns the image and the object's box (x0, y0, x1, y1), inclusive. Blobs and object draw
    their colours from the same range, so only the object's shape tells the classes apart.
    """
    image = rng.integers(0, 100, (SCENE_SIZE, SCENE_SIZE, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:SCENE_SIZE, 0:SCENE_SIZE]
    cy, cx = rng.integers(OBJECT_HALF + 1, SCENE_SIZE - OBJECT_HALF - 1, 2)
    blobs = 0
    while blobs < 4:
        r = int(rng.integers(3, 6))
        by, bx = rng.integers(r, SCENE_SIZE - r, 2)
        if abs(by - cy) < OBJECT_HALF + r + 2 and abs(bx - cx) < OBJECT_HALF + r + 2:
            continue  # keep blobs off the object, so its box holds only the object
        disc = (yy - by) ** 2 + (xx - bx) ** 2 <= r * r
        square = (abs(yy - by) <= r) & (abs(xx - bx) <= r)
        image[disc if rng.random() < 0.5 else square] = rng.integers(140, 256, 3)
        blobs += 1
    if label == 0:
        bar = OBJECT_HALF
        shape = ((abs(yy - cy) <= 1) & (abs(xx - cx) <= bar)) | ((abs(xx - cx) <= 1) & (abs(yy - cy) <= bar))
    else:
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        shape = (d2 <= OBJECT_HALF**2) & (d2 >= (OBJECT_HALF - 2.5) ** 2)
    image[shape] = rng.integers(140, 256, 3)
    return image, (cx - OBJECT_HALF, cy - OBJECT_HALF, cx + OBJECT_HALF, cy + OBJECT_HALF)


def scenes(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``count`` scenes, classes alternating: uint8 images (N, 3, 64, 64), labels, boxes (N, 4)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images, boxes = zip(*(draw_scene(rng, int(label)) for label in labels), strict=True)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.from_numpy(labels), np.array(boxes)


def small_convnet() -> Classifier:
    """Conv-BN-ReLU x4 (16-32-32-32), two max-pools, global average pooling: last maps are 16 x 16."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    features = nn.Sequential(
        block(3, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2), block(32, 32), block(32, 32), GlobalAvgPool2d()
    )
    model = Classifier(features, linear_head(32, len(CLASSES)), 32)
    model.preprocessing = Preprocessing(input_size=SCENE_SIZE)
    return model


def fit(model: Classifier, images: torch.Tensor, labels: torch.Tensor, epochs: int = 4, batch: int = 32) -> None:
    """Adam with a one-cycle schedule; label smoothing keeps the logits from saturating, which would
    let the model lean on the blobs it shares across classes and blur its heatmaps."""
    steps = epochs * -(-len(images) // batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        permutation = torch.randperm(len(images), generator=order)
        for start in range(0, len(images), batch):
            index = permutation[start : start + batch]
            loss = nn.functional.cross_entropy(model(images[index]), labels[index], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


@dataclass
class Localizer:
    """The trained small convnet and its held-out scenes: uint8 ``images``, normalized ``inputs``, object ``boxes``."""

    model: Classifier
    images: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor
    boxes: np.ndarray
    accuracy: float


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    """The small convnet trained on 640 scenes (about 15 s on two cores), tested on 200 others."""
    torch.manual_seed(0)
    model = small_convnet()
    normalize = eval_transform(model.preprocessing)
    train_images, train_labels, _ = scenes(640, seed=0)
    fit(model, normalize(train_images), train_labels)
    test_images, test_labels, boxes = scenes(200, seed=1)
    inputs = normalize(test_images)
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1) == test_labels).float().mean().item()
    return Localizer(model, test_images, inputs, test_labels, boxes, accuracy)


def heatmaps_at_scene_size(model: Classifier, inputs: torch.Tensor, labels: torch.Tensor, method: str) -> torch.Tensor:
    return upsample(class_activation_maps(model, inputs, labels, method=method).heatmaps, (SCENE_SIZE, SCENE_SIZE))


def peaks_inside(heatmaps: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    flat = heatmaps.flatten(1).argmax(1).numpy()
    ys, xs = flat // SCENE_SIZE, flat % SCENE_SIZE
    x0, y0, x1, y1 = boxes.T
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_heatmap_peaks_on_the_object_that_decides_the_class(localizer: Localizer, method: str) -> None:
    maps = heatmaps_at_scene_size(localizer.model, localizer.inputs, localizer.labels, method)
    hit_rate = peaks_inside(maps, localizer.boxes).mean()
    box_fraction = (2 * OBJECT_HALF + 1) ** 2 / SCENE_SIZE**2
    print(f"{method}: accuracy {localizer.accuracy:.3f}, peak on object {hit_rate:.3f}, box area {box_fraction:.3f}")
    assert localizer.accuracy >= 0.95
    assert hit_rate >= 0.85
    assert hit_rate > 10 * box_fraction  # a peak at a random place would land on the object 4% of the time


def test_heatmap_of_the_other_class_avoids_the_object(localizer: Localizer) -> None:
    """Grad-CAM is class-discriminative: a map that merely showed where the network is busy would
    peak on the object for both classes."""
    maps = heatmaps_at_scene_size(localizer.model, localizer.inputs, 1 - localizer.labels, "gradcam")
    hit_rate = peaks_inside(maps, localizer.boxes).mean()
    print(f"gradcam for the other class: peak on object {hit_rate:.3f}")
    assert hit_rate < 0.2


def mean_correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Mean over images of the Pearson correlation between two sets of (N, H, W) heatmaps."""
    first, second = first.flatten(1), second.flatten(1)
    first, second = first - first.mean(1, keepdim=True), second - second.mean(1, keepdim=True)
    return ((first * second).sum(1) / (first.norm(dim=1) * second.norm(dim=1)).clamp(min=1e-8)).mean().item()


def test_heatmaps_of_a_re_randomized_network_do_not_resemble_the_trained_ones(localizer: Localizer) -> None:
    model, inputs, labels = localizer.model, localizer.inputs, localizer.labels
    randomized = copy.deepcopy(model)
    torch.manual_seed(1)
    for module in randomized.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    trained = heatmaps_at_scene_size(model, inputs, labels, "gradcam")
    scrambled = heatmaps_at_scene_size(randomized, inputs, labels, "gradcam")
    correlation = mean_correlation(trained, scrambled)
    random_hits = peaks_inside(scrambled, localizer.boxes).mean()
    print(f"re-randomized: mean correlation with trained heatmaps {correlation:.3f}, peak on object {random_hits:.3f}")
    assert correlation < 0.5


def test_peak_is_reported_in_the_original_image_pixels(localizer: Localizer) -> None:
    """A scene padded to 64 x 96 is cropped back to the scene: the heatmap must shift by the padding."""
    model, index = localizer.model, 0
    scene = localizer.images[index]
    wide = torch.cat([torch.zeros(3, SCENE_SIZE, 16, dtype=torch.uint8), scene, torch.zeros_like(scene[:, :, :16])], 2)
    explanation = explain_image(model, wide, int(localizer.labels[index]))
    x0, y0, x1, y1 = localizer.boxes[index]
    x, y = explanation.peak
    assert explanation.box == (0, 16, SCENE_SIZE)
    assert x0 + 16 <= x <= x1 + 16 and y0 <= y <= y1
    assert explanation.heatmap.shape == (SCENE_SIZE, 96) and explanation.heatmap[:, :16].max() == 0
    overlay = gradcam_overlay(model, wide, int(localizer.labels[index]))
    assert overlay.shape == (SCENE_SIZE, 96, 3) and overlay.dtype == np.uint8


def test_explaining_leaves_the_model_as_it_was() -> None:
    """Hooks are removed, BatchNorm statistics untouched and training mode restored, even after an error."""
    model = small_convnet().train()
    statistics = copy.deepcopy(model.state_dict())
    inputs = torch.randn(3, 3, SCENE_SIZE, SCENE_SIZE)
    class_activation_maps(model, inputs, [0, 1, 0], method="gradcam++")
    layer_activations(model, inputs[:1], num_layers=4)
    filter_patterns(model, filters=2, steps=1, size=16)
    with pytest.raises(CnnkitError, match="one class index"):
        class_activation_maps(model, inputs, [0, 2, 0])
    assert model.training
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in statistics.items())
    assert not any(module._forward_hooks for module in model.modules())


@pytest.mark.parametrize(("height", "width", "crop_pct"), [(427, 640, 0.875), (100, 60, 1.0), (7, 9, 0.5)])
def test_crop_box_is_the_crop_the_model_sees(height: int, width: int, crop_pct: float) -> None:
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    top, left, side = crop_box(height, width, crop_pct)
    assert torch.equal(
        center_crop_resize(image, side, crop_pct, "nearest"), image[:, top : top + side, left : left + side]
    )


# --- the commands on trained runs --------------------------------------------------------------


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """The real entry point, which turns a CnnkitError into one line on stderr and exit status 2."""
    monkeypatch.setattr("sys.argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def invoke_json(*args: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(
    params=[("plain_run", "stripes", "china.jpg"), ("lite0_run", "bees", "flower.jpg")], ids=["plain", "lite0"]
)
def explained_run(request: pytest.FixtureRequest) -> tuple:
    run_fixture, class_name, photo = request.param
    return request.getfixturevalue(run_fixture), class_name, sklearn_image(photo)


@pytest.mark.parametrize("command", ["explain", "visualize"])
def test_commands_have_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_explain_writes_an_overlay_of_the_photo_and_reports_peak_and_scores(explained_run, tmp_path: Path) -> None:
    run, class_name, photo = explained_run
    width, height = Image.open(photo).size
    predicted = invoke_json("explain", str(run.path), photo, "--out", str(tmp_path / "predicted.png"))
    named = invoke_json("explain", str(run.path), photo, "--class", class_name, "--out", str(tmp_path / "named.png"))
    assert predicted["class"] == predicted["scores"][0]
    assert named["class"]["label"] == class_name
    assert len(named["scores"]) == len(run.classes) and abs(sum(s["probability"] for s in named["scores"]) - 1) < 1e-4
    for result in (predicted, named):
        with Image.open(result["out"]) as written:
            # the photo at its own size, with a colour bar beside it and a caption above (also in the PNG's text)
            assert written.format == "PNG" and written.size[0] > width and written.size[1] > height
            assert result["class"]["label"] in written.text["Description"]
        assert result["layer"] == predicted["layer"]
    # The predicted class has evidence somewhere in the crop; a named class may have none at all
    # (Grad-CAM is then all zeros and there is no peak), which depends on the trained weights.
    top, left, side = crop_box(height, width, run.preprocessing.crop_pct)
    for peak in (predicted["peak"], named["peak"] or predicted["peak"]):
        assert left <= peak["x"] < left + side and top <= peak["y"] < top + side


def test_explain_uses_the_last_convolutional_block_or_the_layer_asked_for(plain_run, tmp_path: Path) -> None:
    photo = sklearn_image("china.jpg")
    default = invoke_json("explain", str(plain_run.path), photo, "--out", str(tmp_path / "a.png"))
    chosen = invoke_json(
        "explain",
        str(plain_run.path),
        photo,
        "--layer",
        "features.7",
        "--method",
        "gradcam++",
        "--out",
        str(tmp_path / "b.png"),
    )
    assert default["layer"] == "features.10"  # conv + ReLU pair, the last with 6 x 6 maps at 48 px
    assert chosen["layer"] == "features.7" and chosen["method"] == "gradcam++"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class", "triangle"], "unknown class 'triangle'; the classes are disc, square, stripes"),
        (["--layer", "features.99"], "no layer named 'features.99'"),
        (["--layer", "head.0"], "does not output a (N, C, H, W) map"),
    ],
)
def test_bad_class_or_layer_is_one_line_and_status_2(plain_run, monkeypatch, capsys, args, message) -> None:
    code, err = run_main(monkeypatch, capsys, "explain", str(plain_run.path), sklearn_image("china.jpg"), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_image_is_one_line_and_status_2(plain_run, monkeypatch, capsys, tmp_path: Path) -> None:
    for command in (["explain", str(plain_run.path)], ["visualize", str(plain_run.path), "activations"]):
        code, err = run_main(monkeypatch, capsys, *command, str(tmp_path / "missing.jpg"))
        assert code == 2 and "missing.jpg does not exist" in err and len(err.strip().splitlines()) == 1


# --- activations and filters ----------------------------------------------------------------------


def test_activation_panels_hold_every_channel_of_each_layer(plain_run) -> None:
    model = plain_run.load_model()
    inputs = torch.randn(1, 3, 48, 48)
    first_six = ["features.0.0", "features.0.1", "features.1.0", "features.1.1", "features.2", "features.3.0"]
    activations = layer_activations(model, inputs, layers=first_six)
    assert [(a.name, a.kind) for a in activations] == [
        ("features.0.0", "Conv2d"),
        ("features.0.1", "ReLU"),
        ("features.1.0", "Conv2d"),
        ("features.1.1", "ReLU"),
        ("features.2", "MaxPool2d"),
        ("features.3.0", "Conv2d"),
    ]
    assert [a.maps.shape for a in activations] == [(32, 48, 48)] * 4 + [(32, 24, 24), (64, 24, 24)]
    assert (activations[1].maps >= 0).all() and (activations[0].maps < 0).any()  # captured before the in-place ReLU
    for activation in activations:
        channels, height, width = activation.maps.shape
        channels = min(channels, 32)  # a panel shows at most 32 channels
        grid = activation_panel(activation).grid
        rows = -(-channels // 16)
        assert grid.shape == (rows * (height + 1) - 1, 16 * (width + 1) - 1)
        assert np.isfinite(grid).sum() == channels * height * width


def test_visualize_activations_on_a_pretrained_run(lite0_run, tmp_path: Path) -> None:
    out = tmp_path / "activations.png"
    photo = sklearn_image("flower.jpg")
    result = invoke_json("visualize", str(lite0_run.path), "activations", photo, "--layers", "5", "--out", str(out))
    names = [layer["name"] for layer in result["layers"]]
    assert len(names) == 5 and names[0] == "features.conv_stem"  # spread from the input to the last blocks
    assert result["layers"][0]["type"] == "Conv2dSame" and result["layers"][0]["shape"] == [32, 80, 80]
    assert any(name.startswith(("features.blocks.5", "features.blocks.6", "features.conv_head")) for name in names)
    with Image.open(out) as picture:
        assert picture.format == "PNG"


def test_first_layer_filters_grow_their_response_and_differ(plain_run) -> None:
    """All patterns start from the same noise, so without the ascent they would correlate perfectly."""
    patterns = filter_patterns(plain_run.load_model(), "features.0.0", filters=12)
    assert patterns.layer == "features.0.0"
    assert patterns.images.shape == (12, 48, 48, 3) and patterns.images.dtype == np.uint8
    assert (patterns.end_activation > patterns.start_activation).all()
    flat = patterns.images.reshape(12, -1).astype(np.float64)
    correlations = np.corrcoef(flat)[np.triu_indices(12, k=1)]
    print(f"filter patterns: mean pairwise correlation {correlations.mean():.3f}, max {correlations.max():.3f}")
    assert correlations.mean() < 0.5


def test_visualize_filters_of_a_named_layer(plain_run, tmp_path: Path) -> None:
    result = invoke_json(
        "visualize",
        str(plain_run.path),
        "filters",
        "--layer",
        "features.4",
        "--filters",
        "4",
        "--steps",
        "10",
        "--out",
        str(tmp_path / "f.png"),
    )
    assert result["layer"] == "features.4" and len(result["filters"]) == 4
    assert all(f["end_activation"] >= f["start_activation"] for f in result["filters"])
    assert Image.open(result["out"]).format == "PNG"


def test_filter_count_is_capped_by_the_layer_width() -> None:
    model = small_convnet().eval()
    patterns = filter_patterns(model, "features.0.0", filters=40, steps=2, size=16)
    assert len(patterns.images) == 16
