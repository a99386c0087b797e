"""Localization (issue 18): boxes follow the pixels, bad annotations are named, a synthetic box task is learned."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.box_transforms import RandomBoxAffine, move_box, resample, zoom_shift_flip_theta
from cnnkit.data.boxes import attach_boxes, find_annotations
from cnnkit.data.datasets import warn_skipped
from cnnkit.data.folders import scan_folder
from cnnkit.errors import CnnkitError

COLOURS = {"blue": (30, 60, 230), "red": (230, 40, 30)}


def _pixel_box(image: torch.Tensor) -> torch.Tensor:
    """The drawn rectangle's corners in pixels, recomputed from where the pixels are bright."""
    ys, xs = (image[0] > 0.5).nonzero(as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _drawn(store: int, x0: int, y0: int, x1: int, y1: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(3, store, store, dtype=torch.uint8)
    image[:, y0:y1, x0:x1] = 255
    return image, torch.tensor([x0, y0, x1, y1], dtype=torch.float32) / store


@pytest.mark.parametrize(
    ("scale", "shift", "flip"),
    [(1.0, (0.0, 0.0), True), (1.0, (0.3, -0.2), False), (1.3, (0.0, 0.0), False), (0.8, (-0.1, 0.2), True),
     (1.6, (0.5, 0.4), False)],  # the last zooms and shifts the rectangle partly out: the box is clipped
)  # fmt: skip
def test_flips_shifts_and_crops_move_the_box_with_the_pixels(scale, shift, flip) -> None:
    image, box = _drawn(80, 30, 22, 61, 50)
    out = resample(image, zoom_shift_flip_theta(scale, shift, flip), 64)
    moved = move_box(box, scale, shift, flip) * 64
    assert (_pixel_box(out) - moved).abs().max() <= 1.0


def test_random_box_augmentation_keeps_drawn_boxes_within_a_pixel() -> None:
    torch.manual_seed(0)
    transform = RandomBoxAffine(56)
    for x0, y0 in [(10, 14), (25, 9), (30, 30), (12, 40)]:
        image, box = _drawn(64, x0, y0, x0 + 18, y0 + 13)
        for _ in range(5):
            out, moved = transform(image, box)
            assert (_pixel_box(out) - moved * 56).abs().max() <= 1.0


def _write_boxes_dataset(root: Path, per_class: int, size: int = 40, seed: int = 0) -> Path:
    """Noise images with one coloured rectangle each; its colour is the class, boxes.csv says where it is."""
    rng = np.random.default_rng(seed)
    rows = ["path,label,xmin,ymin,xmax,ymax,width,height"]
    for label, colour in COLOURS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            w, h = rng.integers(size // 4, size * 3 // 4, 2)
            x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
            image[y0 : y0 + h, x0 : x0 + w] = colour
            Image.fromarray(image).save(root / label / f"{i:03d}.png")
            rows.append(f"{label}/{i:03d}.png,{label},{x0},{y0},{x0 + w},{y0 + h},{size},{size}")
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def boxes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_boxes_dataset(tmp_path_factory.mktemp("boxes"), per_class=40)


def _tiny_cnn(num_classes: int, pretrained: bool = False, input_size: int = 32, dropout: float = 0.0):
    from torch import nn

    from cnnkit.models.classifier import Classifier, GlobalAvgPool2d, linear_head

    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
              nn.MaxPool2d(2), GlobalAvgPool2d()]  # fmt: skip
    return Classifier(nn.Sequential(*layers), linear_head(32, num_classes), 32)


@pytest.fixture(scope="module")
def localize_run(boxes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A two-conv model trained from scratch on the synthetic boxes (registered only for this module)."""
    import cnnkit
    from cnnkit.models.config import Preprocessing
    from cnnkit.models.registration import REGISTRY, register_model

    register_model("tiny_loc_test", preprocessing=Preprocessing(input_size=32), description="test only")(_tiny_cnn)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield cnnkit.train(boxes_dir, model="tiny_loc_test", epochs=30, lr=3e-3, progress=False, batch_size=16,
                               out=tmp_path_factory.mktemp("runs") / "loc")  # fmt: skip
    finally:
        REGISTRY.pop("tiny_loc_test", None)


@pytest.mark.parametrize("kind", ["l1_giou", "giou", "smooth_l1"])
def test_every_box_loss_trains_the_edge_head_from_its_start(kind: str) -> None:
    """From the untrained edge head's central box each loss must train it (from a point, GIoU could not)."""
    from cnnkit.models.localizer import Localizer
    from cnnkit.models.registry import create_model
    from cnnkit.train.localize_module import box_loss

    torch.manual_seed(0)
    localizer = Localizer(create_model("compact_resnet_s", num_classes=2))
    assert localizer.spatial
    images = torch.rand(8, 3, 32, 32)
    corners = torch.rand(8, 2) * 0.4
    target = torch.cat([corners, corners + 0.3 + torch.rand(8, 2) * 0.3], dim=1)
    optimizer = torch.optim.Adam(localizer.box_head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = box_loss(localizer(images)[1], target, kind)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses


def test_a_synthetic_box_task_is_learned_far_above_the_constant_box(localize_run) -> None:
    metrics = localize_run.metrics
    assert localize_run.facts.task == "localize" and localize_run.facts.preprocessing.resize == "squash"
    assert metrics["test_accuracy"] >= 0.9
    assert metrics["test_mean_iou"] >= metrics["test_constant_box"]["mean_iou"] + 0.15
    history = localize_run.history
    assert "val_iou" in history[0] and history[-1]["val_iou"] > history[0]["val_iou"]


def test_a_reloaded_run_predicts_the_same_boxes_in_pixels(localize_run, boxes_dir: Path) -> None:
    from cnnkit.data.boxes import pixel_box
    from cnnkit.predictor import Predictor
    from cnnkit.run import load_run

    run = load_run(localize_run.path)
    predictor = Predictor.create(run.load_model(), run.classes, device="cpu")
    images = predictor.load_images([boxes_dir / "red" / "000.png"])
    _, boxes = predictor.localize(images)
    _, trained = Predictor.create(localize_run.model, run.classes, device="cpu").localize(images)
    assert torch.allclose(boxes, trained, atol=1e-5)
    pixels = pixel_box(boxes[0], 40, 40)
    assert 0 <= pixels[0] < pixels[2] <= 40 and 0 <= pixels[1] < pixels[3] <= 40


def _reference_predictor(run):
    """The reloaded run's PyTorch predictor in fp32, the reference exported engines are held to."""
    from cnnkit.predictor import Predictor
    from cnnkit.run import load_run

    loaded = load_run(run.path)
    return Predictor.create(loaded.load_model(), loaded.classes, device="cpu", precision="fp32")


def _reference_boxes(run, paths: list[Path]) -> torch.Tensor:
    """The reloaded run's boxes for image files, in [0, 1], computed by hand from the predictor."""
    predictor = _reference_predictor(run)
    return predictor.localize(predictor.load_images(paths))[1]


def test_predict_gives_the_box_in_pixels_of_the_original_photo_and_draws_it(localize_run, boxes_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from cnnkit.cli.main import app

    photo = tmp_path / "wide.png"  # not the model's square: the box must come back in this photo's pixels
    Image.open(boxes_dir / "red" / "001.png").resize((100, 60)).save(photo)
    drawn = tmp_path / "drawn.png"
    result = CliRunner().invoke(app, ["predict", str(photo), "--run", str(localize_run.path), "--json", "--draw",
                                      str(drawn)], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.output)
    expected = _reference_boxes(localize_run, [photo])[0] * torch.tensor([100, 60, 100, 60])
    assert torch.allclose(torch.tensor(answer["box"]), expected, atol=0.06) and answer["image_size"] == [100, 60]
    assert answer["predictions"][0]["label"] == "red" and answer["drawn"] == str(drawn)
    pixels = np.asarray(Image.open(drawn).convert("RGB"))
    assert pixels.shape == (60, 100, 3)
    xmin, _, xmax, ymax = (round(v) for v in answer["box"])
    bottom = pixels[max(ymax - 2, 0) : ymax + 2, xmin + 1 : xmax - 1]  # the box's bottom line, drawn in red
    assert (bottom == (255, 0, 0)).all(-1).any(0).mean() > 0.9
    folder = tmp_path / "many"
    answers = cnnkit_predict([photo, boxes_dir / "blue" / "001.png"], localize_run.path, folder)
    assert sorted(path.name for path in folder.iterdir()) == ["001.png", "wide.png"]
    assert Image.open(folder / "001.png").size == (40, 40) and answers[0]["box"] == answer["box"]


def cnnkit_predict(paths: list[Path], run: Path, draw: Path) -> list[dict]:
    import cnnkit

    return cnnkit.predict(paths, run=run, draw=draw)


def test_evaluate_reports_iou_overall_and_per_class(localize_run) -> None:
    from typer.testing import CliRunner

    from cnnkit.cli.main import app

    result = CliRunner().invoke(app, ["evaluate", str(localize_run.path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    boxes = json.loads(result.output)["localization"]
    metrics = localize_run.metrics  # training scored the same test split with the same model
    assert boxes["num_images"] == metrics["num_test"] and abs(boxes["mean_iou"] - metrics["test_mean_iou"]) < 1e-5
    assert abs(boxes["both_right"] - metrics["test_both_right"]) < 1e-6
    assert set(boxes["per_class"]) == {"blue", "red"}
    assert all(0 <= row["iou75"] <= row["iou50"] <= 1 for row in boxes["per_class"].values())
    table = CliRunner().invoke(app, ["evaluate", str(localize_run.path)], catch_exceptions=False).output
    assert "mean IoU" in table and "both right" in table


def test_export_checks_the_boxes_against_pytorch(localize_run, boxes_dir, tmp_path: Path) -> None:
    import cnnkit
    from cnnkit.export.onnx import OnnxPredictor

    result = cnnkit.export(localize_run.path, "onnx", out=tmp_path / "loc.onnx")
    checks = result.card["checks"]
    assert result.passed and checks["max_abs_box_diff"] <= 1e-4 and "boxes" in result.card["outputs"]
    photos = [boxes_dir / "red" / "002.png", boxes_dir / "blue" / "003.png"]
    onnx = OnnxPredictor.load(result.path)
    _, boxes = onnx.localize(onnx.load_images(photos))
    assert torch.allclose(boxes, _reference_boxes(localize_run, photos), atol=1e-4)
    shifted_probabilities, shifted_boxes = onnx.localize(onnx.load_images(photos), tta="shift_flip")
    reference_probabilities, reference_boxes = _reference_predictor(localize_run).localize(
        onnx.load_images(photos), tta="shift_flip"
    )
    assert torch.allclose(shifted_boxes, reference_boxes, atol=1e-4)
    assert torch.allclose(shifted_probabilities, reference_probabilities, atol=1e-4)
    scripted = cnnkit.export(localize_run.path, "torchscript", out=tmp_path / "loc.torchscript.pt")
    assert scripted.passed and scripted.card["checks"]["max_abs_box_diff"] <= 1e-4
    with pytest.raises(CnnkitError, match="ONNX or TorchScript"):
        cnnkit.export(localize_run.path, "coreml", out=tmp_path / "loc.mlpackage")


def test_report_shows_the_box_scores_and_the_worst_boxes_first(localize_run) -> None:
    import re

    from cnnkit.evaluate.report import build_report

    page = build_report(localize_run.path).read_text()
    assert 'id="boxes"' in page and "mean IoU" in page
    shown = [float(value) for value in re.findall(r"IoU (\d\.\d\d) · ", page)]
    assert len(shown) == min(18, localize_run.metrics["num_test"]) and shown == sorted(shown)
    width, height = Image.open(localize_run.path / "curves.png").size
    assert width > 3 * height  # three panels (loss, accuracy and IoU), not two


def _annotated(tmp_path: Path, rows: list[str], header: str = "path,label,xmin,ymin,xmax,ymax,width,height"):
    root = _write_boxes_dataset(tmp_path / "data", per_class=4, size=20)
    (root / "boxes.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def test_bad_boxes_are_skipped_by_name_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    rows = [
        "red/000.png,red,2,2,30,10,20,20",  # outside the image
        "red/001.png,red,2,2,8,8,20,20", "red/001.png,red,9,9,12,12,20,20",  # two boxes
        "red/002.png,red,2,2,8,8,20,20", "red/003.png,red,5,5,5,9,20,20",  # a good box, one with no area
        "red/099.png,red,1,1,5,5,20,20",  # no such file
        "blue/000.png,blue,1,1,9,9,20,20", "blue/001.png,blue,1,1,9,9,20,20", "blue/002.png,blue,1,1,9,9,24,24",
    ]  # fmt: skip
    root = _annotated(tmp_path, rows)
    dataset, boxes = attach_boxes(scan_folder(root, 0.25, 0.25, 0), find_annotations(root))
    skipped = dataset.skipped
    reasons = {Path(path).relative_to(root).as_posix(): why for path, why in skipped.items()}
    assert "outside" in reasons["red/000.png"] and "2 boxes" in reasons["red/001.png"]
    assert "no area" in reasons["red/003.png"] and "no box" in reasons["blue/003.png"]
    assert "says 24x24" in reasons["blue/002.png"]
    assert len(boxes) == 3 and any("099.png" in note for note in dataset.notes)
    with pytest.warns(UserWarning) as caught:
        warn_skipped(skipped)
    [message] = [str(w.message) for w in caught]
    assert message.startswith("skipped 5 image(s) without one usable box: ") and "readable" not in message

    for bad_rows, header, words in [
        (["red/000.png,green,1,1,5,5,20,20"], None, "'green' is no class folder"),
        (["red/000.png,blue,1,1,5,5,20,20"], None, "lies in the folder of 'red'"),
        (["red/000.png,red,one,1,5,5,20,20"], None, "line 2"),
        (["red/000.png,red,1,1,5,5"], "path,label,x0,y0,x1,y1", "lacks the column"),
    ]:  # fmt: skip
        root = _annotated(
            tmp_path / words.split()[0].strip("'"), bad_rows, header or "path,label,xmin,ymin,xmax,ymax,width,height"
        )
        with pytest.raises(CnnkitError, match=words) as error:
            attach_boxes(scan_folder(root, 0.25, 0.25, 0), find_annotations(root))
        assert "\n" not in str(error.value)
