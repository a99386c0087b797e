"""Issue 14, "The first hour": what a newcomer sees in the results of a run.

Starting weights said and recorded, other data scored whole under its own name, a report that tells
hesitant images and the kept epoch apart, one card per exported file, int8 probabilities that add up,
and pictures of a readable size. Nothing here downloads anything.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.fileio import read_json, read_yaml, sha256_file
from cnnkit.run import Run
from tests.conftest import write_shapes_dataset
from tests.test_cli import run_main
from tests.test_export import exports, runs  # noqa: F401  (fixtures: each export made once)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No download allowed, and empty weight caches, whatever the machine running the tests has."""
    monkeypatch.delenv("CNNKIT_DOWNLOAD", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


# --- 1. starting weights ----------------------------------------------------------------------------------------


def test_a_model_without_offline_weights_warns_before_reading_any_data(tmp_path: Path) -> None:
    from cnnkit.models.starting import RandomInitWarning

    with pytest.warns(RandomInitWarning) as caught, pytest.raises(CnnkitError, match="does not exist"):
        cnnkit.train(tmp_path / "no-such-folder", model="resnet18", progress=False, out=tmp_path / "run")
    message = str(caught[0].message)
    assert "\n" not in message and "random initialisation" in message and "accuracy" in message
    for way_out in ("--weights PATH", "CNNKIT_DOWNLOAD=1", "efficientnet_lite0", "efficientnet_lite2"):
        assert way_out in message


def test_a_torchvision_model_without_weights_trains_from_scratch_and_records_none(
    shapes_dir: Path, tmp_path: Path
) -> None:
    from cnnkit.models.starting import RandomInitWarning

    with pytest.warns(RandomInitWarning, match="timm:resnet18 has no ImageNet weights"):
        run = cnnkit.train(
            shapes_dir, model="timm:resnet18", epochs=1, image_size=32, augment="none", progress=False,
            out=tmp_path / "run",
        )  # fmt: skip
    resolved = read_yaml(run.path / "config.yaml")["resolved"]
    assert resolved["weights"] == "none (random init)" and resolved["pretrained"] is False


def test_pretrained_without_weights_is_a_one_line_error(monkeypatch, capsys, shapes_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_main(
        monkeypatch, capsys, "train", str(shapes_dir), "--model", "resnet18", "--pretrained", "--out", str(tmp_path)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--pretrained" in err and "--weights PATH" in err and "CNNKIT_DOWNLOAD=1" in err
    with pytest.raises(CnnkitError, match="--pretrained: model 'plain_cnn' has no pretrained weights"):
        cnnkit.train(shapes_dir, model="plain_cnn", pretrained=True, progress=False, out=tmp_path / "plain")


def test_weights_is_a_train_option() -> None:
    from cnnkit.config import TrainConfig, option_specs

    assert "weights" in {name for name, *_ in option_specs()}
    assert TrainConfig(weights="start.pth").weights == "start.pth"


def test_a_weights_file_starts_the_run_and_is_recorded(shapes_dir: Path, tmp_path: Path) -> None:
    """A state dict of another run with 5 classes: its features load, its head is replaced, and the run says so."""
    from cnnkit.models import create_model

    donor = create_model("plain_cnn", 5, image_size=48)
    torch.manual_seed(1)
    for parameter in donor.parameters():
        parameter.data.normal_()
    path = tmp_path / "start.pth"
    torch.save(donor.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no random-initialisation warning
        run = cnnkit.train(
            shapes_dir, model="plain_cnn", weights=str(path), epochs=1, fine_tune_epochs=0, image_size=48,
            augment="none", progress=False, out=tmp_path / "run",
        )  # fmt: skip
    resolved = read_yaml(run.path / "config.yaml")["resolved"]
    assert resolved["weights"] == f"file:{path.resolve()} sha256:{sha256_file(path)}"
    assert resolved["pretrained"] is True  # the transfer recipe: frozen features, a new head
    trained = Run(run.path, run.config, run.facts, run.classes, run.metrics).load_model()
    features = {k: v for k, v in donor.state_dict().items() if k.startswith("features.")}
    assert all(torch.equal(trained.state_dict()[key], value) for key, value in features.items())


def test_a_torchvision_pth_loads_into_the_wrapped_model(tmp_path: Path) -> None:
    import torchvision

    from cnnkit.models import create_model
    from cnnkit.models.starting import load_starting_weights

    native = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(native.state_dict(), path)
    model = create_model("resnet18", 3)
    assert load_starting_weights(model, path) == "features"
    assert torch.equal(model.features.layer4[1].conv2.weight, native.layer4[1].conv2.weight)
    assert model.head[-1].out_features == 3
    with pytest.raises(CnnkitError, match=r"--weights .* does not fit"):
        load_starting_weights(create_model("resnet34", 3), path)


# --- 2. evaluating other data -------------------------------------------------------------------------------------


def test_another_flat_folder_is_scored_whole_into_its_own_file(plain_run: Run, tmp_path: Path) -> None:
    from cnnkit.evaluate import analyze

    own = analyze(plain_run.path)
    own_file = plain_run.path / "evaluation_test.json"
    before = own_file.read_bytes()
    folder = write_shapes_dataset(tmp_path / "holiday", per_class=5, size=48, seed=7)
    other = analyze(plain_run.path, data=folder)
    assert other.evaluation.split == "all" and len(other.evaluation.labels) == 15
    saved = read_json(plain_run.path / "evaluation_holiday.json")
    assert saved["data"] == str(folder) and saved["num_images"] == 15 and "holiday" in saved["scored"]
    assert own_file.read_bytes() == before and own.evaluation.split == "test"
    assert other.files["confusion_matrix"].name == "confusion_matrix_holiday.png"


def test_a_folder_with_split_folders_is_scored_on_its_test_split(plain_run: Run, tmp_path: Path) -> None:
    from cnnkit.evaluate import evaluate

    folder = write_shapes_dataset(tmp_path / "later", per_class=10, size=48, seed=3, layout="split")
    result = evaluate(plain_run, data=folder)
    assert result.split == "test" and len(result.labels) == 6
    assert (plain_run.path / "evaluation_later_test.json").is_file()


@pytest.mark.parametrize(("given", "meant"), [("validation", "val"), ("valid", "val"), ("VAL", "val"), ("all", "all")])
def test_split_accepts_the_names_users_have(plain_run: Run, given: str, meant: str) -> None:
    from cnnkit.evaluate import evaluate

    result = evaluate(plain_run, split=given, save=False)
    dataset = plain_run.load_dataset()
    expected = sum(len(s) for s in (dataset.train, dataset.val, dataset.test)) if meant == "all" else len(dataset.val)
    assert result.split == meant and len(result.labels) == expected


def test_the_evaluate_table_names_the_folder_and_the_image_count(
    monkeypatch, capsys, plain_run: Run, tmp_path: Path
) -> None:
    folder = write_shapes_dataset(tmp_path / "phone", per_class=3, size=48, seed=9)
    code, out, _ = run_main(monkeypatch, capsys, "evaluate", str(plain_run.path), "--data", str(folder))
    assert code in (0, None)
    flat = " ".join(out.split())
    assert "phone" in flat and "9 images" in flat and "evaluation_phone.json" in flat
    with pytest.raises(CnnkitError, match="--split must be train, val"):
        cnnkit.evaluate(plain_run, split="testing", save=False)


# --- 3. the report --------------------------------------------------------------------------------------------------


def _analysis(probabilities: list[list[float]], labels: list[int]):
    from cnnkit.evaluate.analysis import Analysis
    from cnnkit.evaluate.interpret import interpret
    from cnnkit.evaluate.metrics import Evaluation

    probabilities = np.asarray(probabilities)
    evaluation = Evaluation(
        "test", ["a", "b"], 1.0, {}, np.zeros((2, 2)), np.asarray(labels), probabilities,
        [f"img_{i}.png" for i in range(len(labels))],
    )  # fmt: skip
    return Analysis(evaluation, interpret(evaluation), None, None, {})


def test_only_genuinely_hesitant_images_are_hesitant() -> None:
    from cnnkit.evaluate.report import _mistakes_section

    sure = _analysis([[0.998, 0.002], [0.01, 0.99], [0.7, 0.3]], [0, 1, 0])
    assert sure.interpretation.hesitant == [] and sure.interpretation.hesitant_count == 0
    assert "No image was hesitant" in _mistakes_section(sure, {}, {})
    torn = _analysis([[0.55, 0.45], [0.48, 0.52], [0.998, 0.002]], [0, 0, 0])
    assert [case.index for case in torn.interpretation.hesitant] == [1, 0]  # margins 0.04, then 0.1
    page = _mistakes_section(torn, {"img_0.png": "x", "img_1.png": "y"}, {})
    assert "2 of 3 images were hesitant" in page and "less than 0.2 apart" in page


def test_the_report_says_which_epoch_was_kept_and_that_fine_tuning_was_discarded() -> None:
    from cnnkit.evaluate.report import kept_model_text

    history = [{"stage": "head"}] * 4 + [{"stage": "fine_tune"}] * 3
    text = kept_model_text({"best_epoch": 3, "best_stage": "head", "val_accuracy": 0.9}, history)
    assert "epoch 3, head stage" in text and "Fine-tuning ran for 3 epoch(s)" in text and "discarded" in text
    kept = kept_model_text({"best_epoch": 6, "best_stage": "fine_tune"}, history)
    assert "epoch 6, fine_tune stage" in kept and "discarded" not in kept


def test_the_report_of_a_run_shows_the_kept_epoch_and_the_starting_weights(plain_run: Run) -> None:
    from cnnkit.evaluate import build_report

    page = build_report(plain_run).read_text()
    assert f"The kept model is the one of epoch {plain_run.metrics['best_epoch']}" in page
    assert "starting weights" in page and "none (random init)" in page


# --- 4 and 5. exports -----------------------------------------------------------------------------------------------


def test_each_exported_file_has_its_own_card(plain_run: Run, tmp_path: Path) -> None:
    from cnnkit.export import export
    from cnnkit.export.card import card_path

    assert card_path(Path("m.onnx")).name == "m.onnx.card.json"
    assert card_path(Path("m.int8.onnx")).name == "m.int8.onnx.card.json"
    assert card_path(Path("m.mlpackage")).name == "m.mlpackage.card.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_result = export(plain_run, "onnx", out=tmp_path / "m.onnx", check_images=8)
        script_result = export(plain_run, "torchscript", out=tmp_path / "m.pt", check_images=8)
    assert onnx_result.card_path != script_result.card_path
    assert read_json(tmp_path / "m.onnx.card.json")["format"] == "onnx"
    assert read_json(tmp_path / "m.pt.card.json")["format"] == "torchscript"


def test_int8_probabilities_add_up_to_one(exports, plain_run: Run) -> None:  # noqa: F811
    from cnnkit.export.network import model_input
    from cnnkit.export.onnx import OnnxPredictor
    from tests.test_export import ort_probabilities, validation_images

    int8 = exports("plain", "int8")
    images = validation_images(plain_run).images
    from_file = ort_probabilities(int8.path, model_input(images, plain_run.preprocessing, "normalized"))
    assert np.abs(from_file.sum(1) - 1).max() <= 1e-5  # the softmax runs in float, after dequantization
    predicted = OnnxPredictor.load(int8.path).probabilities(images, tta="flip")
    assert (predicted.double().sum(1) - 1).abs().max() <= 1e-5


def test_predictors_renormalize_rows_that_do_not_add_up() -> None:
    from cnnkit.export.network import renormalized

    rows = torch.tensor([[0.5, 0.51, 0.0], [0.2, 0.2, 0.58]])
    fixed = renormalized(rows)
    assert (fixed.double().sum(1) - 1).abs().max() <= 1e-6
    assert torch.equal(fixed.argmax(1), rows.argmax(1))


# --- 6. pictures ----------------------------------------------------------------------------------------------------


def test_gradcam_png_has_a_colour_bar_and_says_what_it_explains(plain_run: Run, tmp_path: Path) -> None:
    from cnnkit.explain import explain_image

    model = plain_run.load_model()
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    explanation = explain_image(model, image)
    path = explanation.save(plain_run.classes, tmp_path / "cam.png")
    with Image.open(path) as picture:
        caption = picture.text["Description"]
        width, height = picture.size
    label = plain_run.classes[explanation.class_index]
    probability = float(explanation.probabilities[explanation.class_index])
    assert caption.startswith(f"Grad-CAM of {label!r} (p = {probability:.3f})")
    assert width > height  # the colour bar sits beside the square image
    assert max(width, height) <= 2000


def test_activation_layers_spread_over_the_depth_and_the_png_stays_small(tmp_path: Path) -> None:
    from cnnkit.explain import image_activations, plot_activations
    from cnnkit.models import create_model

    model = create_model("resnet18", 10).eval()
    image = torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8)
    activations = image_activations(model, image)
    names = [a.name for a in activations]
    assert len(names) == 8 and len(set(names)) == 8
    assert names[0] == "features.conv1" and any(name.startswith("features.layer4") for name in names)
    assert sum(name.startswith(("features.layer2", "features.layer3")) for name in names) >= 2
    path = plot_activations(activations, tmp_path / "activations.png")
    with Image.open(path) as picture:
        assert max(picture.size) <= 2000
    assert path.stat().st_size <= 4_000_000


def test_filter_patterns_default_to_a_middle_convolution() -> None:
    from cnnkit.explain import filter_patterns
    from cnnkit.explain.filters import default_filter_layer
    from cnnkit.models import create_model

    model = create_model("resnet18", 10).eval()
    layer = default_filter_layer(model, 64)
    assert layer != "features.conv1" and layer.startswith(("features.layer2", "features.layer3"))
    patterns = filter_patterns(model, filters=2, steps=1, size=32)
    assert patterns.layer == layer and patterns.images.shape[0] == 2
