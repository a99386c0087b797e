"""Shipping: ONNX, int8, TorchScript and Core ML exports, each checked here independently of the export's own checks.

The PyTorch reference is always fp32 on the CPU. Exports are made once per module and shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from cnnkit.cli.main import app
from cnnkit.data import decode_images
from cnnkit.data.datasets import DecodedImages
from cnnkit.export import ExportResult, ModelMetadata, export
from cnnkit.export.coreml import export_coreml, image_normalization, import_coremltools, inspect_coreml
from cnnkit.export.exporter import SUFFIXES
from cnnkit.export.network import ExportedClassifier, model_input
from cnnkit.export.verify import MAX_CHECK_IMAGES
from cnnkit.models import create_model
from cnnkit.models.config import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from cnnkit.predictor import Predictor
from cnnkit.run import Run
from tests.test_cli import run_main

LITE0_CHECK_IMAGES = 32  # lite0's float exports check themselves on 32 of its 153 validation images, to save time
METADATA = {"author": "Ada Lovelace", "license": "CC-BY-4.0", "description": "Tells ants from bees"}


@dataclass
class Reference:
    """Validation images of a run and what the original model says about them in fp32."""

    images: torch.Tensor
    labels: torch.Tensor
    probabilities: torch.Tensor
    sources: list[str]


def validation_images(run: Run) -> DecodedImages:
    dataset = run.load_dataset()
    return decode_images(dataset.val, run.preprocessing)


def reference_for(run: Run, limit: int | None = None) -> Reference:
    decoded = validation_images(run)
    keep = slice(None) if limit is None else slice(0, len(decoded.labels), max(1, len(decoded.labels) // limit))
    images, labels = decoded.images[keep], decoded.labels[keep]
    predictor = Predictor.create(run.load_model(), run.classes, device="cpu", precision="fp32")
    return Reference(images, labels, predictor.probabilities(images), decoded.sources[keep])


def ort_probabilities(path: Path, inputs: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [inputs[i : i + batch_size].numpy() for i in range(0, len(inputs), batch_size)]
    return np.concatenate([session.run(None, {name: batch})[0] for batch in batches])


def assert_parity(probabilities: np.ndarray | torch.Tensor, reference: Reference) -> None:
    probabilities = torch.as_tensor(probabilities)
    assert torch.equal(probabilities.argmax(1), reference.probabilities.argmax(1))
    assert (probabilities - reference.probabilities).abs().max() <= 1e-4


class _OnFirstUse(dict):
    """A dict that makes each value on first lookup, so a test of the plain run never waits for, or
    skips with, the lite0 run (trained on the shared photos, which a clone may not have)."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, name: str):
        self[name] = self.make(name)
        return self[name]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> dict[str, Run]:
    return _OnFirstUse(lambda name: request.getfixturevalue(f"{name}_run"))


@pytest.fixture(scope="module")
def references(runs: dict[str, Run]) -> dict[str, Reference]:
    return _OnFirstUse(lambda name: reference_for(runs[name], limit=32 if name == "lite0" else None))


@pytest.fixture(scope="module")
def exports(runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory):
    """Each (run, variant) exported once, on first use."""
    folder = tmp_path_factory.mktemp("exports")
    made: dict[tuple[str, str], ExportResult] = {}
    variants = {
        "onnx": {"format": "onnx"},
        "raw": {"format": "onnx", "raw_input": True},
        "int8": {"format": "onnx", "int8": True},
        "torchscript": {"format": "torchscript"},
        "coreml": {"format": "coreml", **METADATA},
    }

    def get(name: str, variant: str) -> ExportResult:
        if (name, variant) not in made:
            options = variants[variant]
            limit = LITE0_CHECK_IMAGES if name == "lite0" and variant != "int8" else MAX_CHECK_IMAGES
            out = folder / name / f"{name}-{variant}{SUFFIXES[options['format']]}"
            made[name, variant] = export(runs[name], out=out, check_images=limit, **options)
        return made[name, variant]

    return get


@pytest.mark.parametrize("name", ["plain", "lite0"])
def test_onnx_is_one_valid_file_with_a_dynamic_batch_and_matches_pytorch(name, exports, runs, references) -> None:
    result = exports(name, "onnx")
    onnx.checker.check_model(str(result.path), full_check=True)
    model = onnx.load(str(result.path))
    assert min(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    assert [p.name for p in result.path.parent.iterdir() if p.suffix == ".data"] == []
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    reference = references[name]
    normalized = model_input(reference.images, runs[name].preprocessing, "normalized")
    for batch in (1, 3):
        assert ort_probabilities(result.path, normalized[:batch]).shape == (batch, len(result.card["classes"]))
    assert_parity(ort_probabilities(result.path, normalized), reference)
    checks = result.card["checks"]
    assert checks["passed"] and checks["top1_agreement"] == 1.0 and checks["max_abs_prob_diff"] <= 1e-4


def test_onnx_metadata_carries_classes_and_preprocessing(exports, plain_run: Run) -> None:
    props = {p.key: p.value for p in onnx.load(str(exports("plain", "onnx").path)).metadata_props}
    assert json.loads(props["cnnkit.classes"]) == plain_run.classes
    assert json.loads(props["cnnkit.preprocessing"]) == plain_run.preprocessing.to_dict()
    assert props["cnnkit.input_kind"] == "normalized"


def test_raw_input_onnx_takes_uint8_nhwc_pixels(exports, references) -> None:
    result = exports("plain", "raw")
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (model_in,) = session.get_inputs()
    assert model_in.type == "tensor(uint8)" and model_in.shape[1:] == [48, 48, 3]
    reference = references["plain"]
    assert_parity(ort_probabilities(result.path, reference.images.permute(0, 2, 3, 1).contiguous()), reference)


def test_int8_is_under_30_percent_of_fp32_and_keeps_its_predictions(exports, lite0_run: Run) -> None:
    """The fixture's head saw 61 images, so several validation images sit near 50/50 and int8 noise can
    flip one or two; the one-point accuracy target is measured on a full run in ``benchmarks/inference.py``."""
    fp32, int8 = exports("lite0", "onnx"), exports("lite0", "int8")
    assert int8.path.stat().st_size <= 0.30 * fp32.path.stat().st_size
    val = validation_images(lite0_run)  # the whole split: one image is 0.65 points
    normalized = model_input(val.images, lite0_run.preprocessing, "normalized")
    fp32_predicted = ort_probabilities(fp32.path, normalized).argmax(1)
    int8_predicted = ort_probabilities(int8.path, normalized).argmax(1)
    assert (int8_predicted == fp32_predicted).mean() >= 0.97
    int8_accuracy = (int8_predicted == val.labels.numpy()).mean()
    change = (int8_accuracy - (fp32_predicted == val.labels.numpy()).mean()) * 100
    checks = int8.card["checks"]
    assert checks["accuracy"] == pytest.approx(int8_accuracy)
    assert checks["accuracy_change_points"] == pytest.approx(change) and checks["passed"] == (change >= -1.0)
    assert checks["size_ratio"] <= 0.30 and checks["calibration_images"] > 0
    assert checks["latency_ms_batch1"]["int8"] > 0 and checks["latency_ms_batch1"]["fp32"] > 0


@pytest.mark.filterwarnings("ignore:.*torch.jit.* is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["plain", "lite0"])
def test_torchscript_matches_pytorch_at_any_batch_size(name, exports, runs, references) -> None:
    result = exports(name, "torchscript")
    module = torch.jit.load(str(result.path))
    reference = references[name]
    normalized = model_input(reference.images, runs[name].preprocessing, "normalized")
    with torch.no_grad():
        for batch in (1, 3):
            assert module(normalized[:batch]).shape == (batch, len(result.card["classes"]))
        assert_parity(module(normalized), reference)
    assert result.card["checks"]["passed"]


@pytest.mark.parametrize("name", ["plain", "lite0"])
def test_coreml_package_has_image_input_classifier_outputs_and_metadata(name, exports, runs) -> None:
    run = runs[name]
    result = exports(name, "coreml")
    spec = import_coremltools().utils.load_spec(str(result.path))
    (image,) = spec.description.input
    size = run.preprocessing.input_size
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (size, size)
    assert [o.name for o in spec.description.output] == ["label", "labelProbability"]
    assert spec.description.predictedFeatureName == "label"
    assert spec.description.predictedProbabilitiesName == "labelProbability"
    metadata = spec.description.metadata
    assert (metadata.author, metadata.license, metadata.shortDescription) == tuple(METADATA.values())
    std, mean = run.preprocessing.std[0], run.preprocessing.mean
    inspected = inspect_coreml(result.path)
    assert inspected["color_space"] == "RGB" and inspected["class_labels"] == run.classes
    assert inspected["scale"] == pytest.approx(1 / (255 * std))
    assert inspected["bias"] == pytest.approx([-m / std for m in mean])
    assert result.card["checks"]["passed"] and "macOS" in result.card["checks"]["numeric_check"]


def test_coreml_grayscale_model_gets_a_grayscale_image_input(tmp_path: Path) -> None:
    model = create_model("lenet5", 10).eval()
    path = tmp_path / "digits.mlpackage"
    export_coreml(model, model.preprocessing, [str(d) for d in range(10)], 1.0, path, ModelMetadata(), {})
    inspected = inspect_coreml(path)
    assert inspected["color_space"] == "GRAYSCALE" and (inspected["width"], inspected["height"]) == (28, 28)
    assert inspected["scale"] == pytest.approx(1 / 255) and inspected["bias"] == pytest.approx([0.0])


def test_per_channel_std_is_normalized_exactly_inside_the_model(tmp_path: Path) -> None:
    preprocessing = Preprocessing(input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    normalization = image_normalization(preprocessing)
    assert "std differs by channel" in normalization.note
    model = create_model("plain_cnn", 3, image_size=32).eval()
    path = tmp_path / "imagenet-normalized.mlpackage"
    export_coreml(model, preprocessing, ["a", "b", "c"], 1.0, path, ModelMetadata(), {})
    inspected = inspect_coreml(path)
    assert inspected["scale"] == pytest.approx(1 / 255) and inspected["bias"] == [0.0, 0.0, 0.0]
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(model_input(pixels, preprocessing, "normalized")).softmax(1)
        inside = ExportedClassifier(model, preprocessing, normalization.input_kind, 1.0)
        got = inside(model_input(pixels, preprocessing, normalization.input_kind))
    assert (got - expected).abs().max() <= 1e-6


def test_card_beside_each_export_records_what_was_measured(exports, plain_run: Run) -> None:
    result = exports("plain", "onnx")
    card = json.loads(result.card_path.read_text())
    assert result.card_path == result.path.with_name(result.path.name + ".card.json")  # one card per file
    assert card["classes"] == plain_run.classes and card["input_size"] == 48
    assert card["preprocessing"] == plain_run.preprocessing.to_dict()
    assert card["file_size_bytes"] == result.path.stat().st_size
    validation = card["validation"]
    assert 0 <= validation["accuracy"] <= 1
    assert validation["images"] == validation["split_images"] == len(validation_images(plain_run).labels)
    assert card["checks"]["top1_agreement"] == 1.0 and card["checks"]["onnx_checker"]


@pytest.mark.parametrize("name", ["plain", "lite0"])
def test_predict_with_onnx_gives_the_same_top1_as_the_run(name, exports, runs, references) -> None:
    runner = CliRunner()
    reference = references[name]
    # --run infers in bf16 on CPUs that have it, which may flip a near-tie: use clearly decided images
    decided = reference.probabilities.max(1).values >= 0.6
    images = [source for source, keep in zip(reference.sources, decided.tolist(), strict=True) if keep][:3]
    assert images

    def top1(*source: str) -> list[str]:
        result = runner.invoke(app, ["predict", *images, *source, "--json"], catch_exceptions=False)
        return [entry["predictions"][0]["label"] for entry in json.loads(result.stdout)]

    assert top1("--onnx", str(exports(name, "onnx").path)) == top1("--run", str(runs[name].path))


def test_export_command_prints_pure_json(plain_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "plain.torchscript.pt"
    result = CliRunner().invoke(
        app, ["export", str(plain_run.path), "--format", "torchscript", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["passed"] and data["path"] == str(out) and out.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "unknown --format 'tflite'"),
        (["--format", "coreml", "--int8"], "--int8 needs --format onnx"),
        (["--out", "{file}/model.onnx"], "cannot write"),
    ],
)
def test_bad_export_options_are_one_line_and_status_2(monkeypatch, capsys, plain_run: Run, tmp_path, args, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = [arg.replace("{file}", str(blocker)) for arg in args]
    code, _, err = run_main(monkeypatch, capsys, "export", str(plain_run.path), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_run_is_one_line_and_status_2(monkeypatch, capsys) -> None:
    code, _, err = run_main(monkeypatch, capsys, "export", "/no/such/run", "--format", "onnx")
    assert code == 2 and "run folder /no/such/run does not exist" in err and len(err.strip().splitlines()) == 1
