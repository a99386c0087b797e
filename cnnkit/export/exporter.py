"""``export``: a trained run -> one shipped file (ONNX, Core ML or TorchScript), checked against the original.

Every export is verified before it is reported: float exports must pick the same class as PyTorch
fp32 on every validation image and stay within 1e-4 in probability; int8 must lose at most one
point of validation accuracy; Core ML is checked from its spec. The numbers go into
``FILE.card.json`` (e.g. ``model.onnx.card.json``), one card per exported file.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from cnnkit.errors import CnnkitError
from cnnkit.export.card import ModelMetadata, as_string_map, embedded_metadata, file_size, write_card
from cnnkit.export.coreml import (
    IMAGE_INPUT,
    LABEL_OUTPUT,
    MACOS_NOTE,
    PROBABILITY_OUTPUT,
    export_coreml,
    inspect_coreml,
)
from cnnkit.export.network import ExportedClassifier, ExportedPredictor, example_input, model_input
from cnnkit.export.onnx import BOXES_NAME, INPUT_NAME, OUTPUT_NAME, OnnxPredictor, check_onnx, to_onnx, write_onnx
from cnnkit.export.quantize import CALIBRATION_IMAGES, quantize_onnx
from cnnkit.export.torchscript import TorchScriptPredictor, export_torchscript
from cnnkit.export.verify import (
    MAX_CHECK_IMAGES,
    CheckImages,
    accuracy,
    compare,
    compare_latency,
    load_calibration_images,
    load_check_images,
    parity_checks,
)
from cnnkit.models.classifier import Classifier
from cnnkit.run import Run, load_run

FORMATS = ("onnx", "coreml", "torchscript")
SUFFIXES = {"onnx": ".onnx", "coreml": ".mlpackage", "torchscript": ".torchscript.pt"}
MAX_INT8_ACCURACY_LOSS_POINTS = 1.0


@dataclass
class ExportResult:
    """The exported file, its card and whether every check passed."""

    format: str
    path: Path
    card_path: Path
    card: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.card["checks"]["passed"])

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "card_path": str(self.card_path), "passed": self.passed, **self.card}


@dataclass
class ExportJob:
    """Everything a format's exporter needs, prepared once."""

    run: Run
    model: Classifier
    path: Path
    temperature: float
    metadata: ModelMetadata
    checks: CheckImages
    raw_input: bool = False
    int8: bool = False

    @property
    def input_kind(self) -> str:
        return "raw" if self.raw_input else "normalized"

    @property
    def localizes(self) -> bool:
        return self.checks.reference_boxes is not None

    def network(self) -> ExportedClassifier:
        return ExportedClassifier(self.model, self.run.preprocessing, self.input_kind, self.temperature).eval()


@dataclass
class Shipped:
    """What a format's exporter reports: the model's interface, its accuracy and its checks."""

    interface: dict[str, Any]
    accuracy: float | None
    checks: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def export(
    run: str | Path | Run,
    format: str = "onnx",
    out: str | Path | None = None,
    int8: bool = False,
    raw_input: bool = False,
    author: str | None = None,
    license: str | None = None,
    description: str | None = None,
    check_images: int = MAX_CHECK_IMAGES,
) -> ExportResult:
    """Export a trained run for deployment, verify it against the original and write its card beside it
    (``FILE.card.json``, e.g. ``model.onnx.card.json``).

    ``format`` is ``onnx``, ``coreml`` or ``torchscript``. ``int8`` (ONNX only) quantizes with ONNX
    Runtime, calibrated on training images. ``raw_input`` (ONNX, TorchScript) bakes preprocessing into
    the graph so an app feeds uint8 RGB pixels (N, H, W, 3) already cropped and resized. ``out``
    defaults to ``RUN/export/RUNNAME[.raw][.int8].EXT``. The checks use at most ``check_images``
    validation images, spread over the split.
    """
    check_options(format, int8, raw_input, check_images)
    loaded = run if isinstance(run, Run) else load_run(run)
    if loaded.facts.task == "localize" and (format == "coreml" or int8):
        raise CnnkitError("localization runs export to ONNX or TorchScript in float only (no --int8, no Core ML)")
    path = output_path(loaded, format, out, int8, raw_input)
    temperature = loaded.temperature
    model = loaded.load_model()
    job = ExportJob(
        run=loaded,
        model=model,
        path=path,
        temperature=temperature,
        metadata=ModelMetadata(author, license, description).with_default_description(loaded),
        checks=load_check_images(loaded, model, temperature, check_images),
        raw_input=raw_input,
        int8=int8,
    )
    shipped = {"onnx": ship_onnx, "coreml": ship_coreml, "torchscript": ship_torchscript}[format](job)
    card = make_card(job, format, shipped)
    return ExportResult(format, path, write_card(path, card), card)


def make_card(job: ExportJob, export_format: str, shipped: Shipped) -> dict[str, Any]:
    """The card's content: the file, how to feed it, the validation numbers and every check."""
    from cnnkit import __version__

    run = job.run
    return {
        "file": job.path.name,
        "format": export_format,
        "int8": job.int8,
        "raw_input": job.raw_input,
        "file_size_bytes": file_size(job.path),
        "run": str(run.path),
        "model": run.config.model,
        "classes": run.classes,
        "input_size": run.preprocessing.input_size,
        **shipped.interface,
        "preprocessing": run.preprocessing.to_dict(),
        "temperature": job.temperature,
        "metadata": job.metadata.to_dict(),
        "validation": {
            "split": "val",
            "images": len(job.checks.labels),
            "split_images": job.checks.split_size,
            "accuracy": shipped.accuracy,
            "pytorch_fp32_accuracy": job.checks.reference_accuracy,
        },
        "checks": shipped.checks,
        "notes": shipped.notes,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cnnkit_version": __version__,
    }


def check_options(export_format: str, int8: bool, raw_input: bool, check_images: int) -> None:
    if export_format not in FORMATS:
        raise CnnkitError(f"unknown --format {export_format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and export_format != "onnx":
        raise CnnkitError("--int8 needs --format onnx (ONNX Runtime static quantization)")
    if raw_input and export_format == "coreml":
        raise CnnkitError("--raw-input is for onnx and torchscript; a Core ML model always takes an image")
    if check_images < 1:
        raise CnnkitError(f"--check-images must be at least 1, not {check_images}")


def output_path(run: Run, export_format: str, out: str | Path | None, int8: bool, raw_input: bool) -> Path:
    """``out``, or the default name inside ``RUN/export``; its folder must be writable."""
    if out is None:
        variant = (".raw" if raw_input else "") + (".int8" if int8 else "")
        path = run.path / "export" / f"{run.path.name}{variant}{SUFFIXES[export_format]}"
    else:
        path = Path(out)
    if export_format == "coreml" and path.suffix != ".mlpackage":
        raise CnnkitError(f"--out {path} must end in .mlpackage for Core ML")
    if path.is_dir() and export_format != "coreml":
        raise CnnkitError(
            f"--out {path} is a folder; give a file path such as {path / run.path.name}{SUFFIXES[export_format]}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnkitError(f"cannot write {path}: cannot create the folder {path.parent} ({exc.strerror})") from exc
    if not os.access(path.parent, os.W_OK):
        raise CnnkitError(f"cannot write to folder {path.parent}; choose another --out")
    return path


def tensor_interface(job: ExportJob) -> dict[str, Any]:
    """How to feed and read an ONNX or TorchScript export (any batch size)."""
    p, batch = job.run.preprocessing, "batch"
    if job.raw_input:
        model_in = {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": [batch, p.input_size, p.input_size, p.channels],
            "layout": "NHWC",
            "expects": "pixels center-cropped and resized as in 'preprocessing'; scaling and normalization are inside",
        }
    else:
        model_in = {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": [batch, p.channels, p.input_size, p.input_size],
            "layout": "NCHW",
            "expects": "cropped and resized as in 'preprocessing', then pixel / 255, then (x - mean) / std",
        }
    outputs = {OUTPUT_NAME: f"softmax probabilities, shape [batch, {len(job.run.classes)}]"}
    if job.localizes:
        outputs[BOXES_NAME] = (
            "the object's box, shape [batch, 4]: xmin, ymin, xmax, ymax in [0, 1] of the whole image "
            "(the input is the image squashed to the square, not cropped), so multiply by its width and height"
        )
    return {"input": model_in, "outputs": outputs}


def ship_onnx(job: ExportJob) -> Shipped:
    proto = to_onnx(job.network(), example_input(job.run.preprocessing, job.input_kind), boxes=job.localizes)
    props = as_string_map(embedded_metadata(job.run, job.input_kind, job.temperature, job.metadata))
    if not job.int8:
        write_onnx(proto, job.path, props, job.metadata.description)
        checks = check_onnx(job.path)
        checks.update(exported_parity(OnnxPredictor.load(job.path), job))
        checks["passed"] = checks["passed"] and onnx_file_ok(checks)
        return Shipped(tensor_interface(job), checks["accuracy"], checks)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        write_onnx(proto, fp32_path, props, job.metadata.description)
        calibration = load_calibration_images(job.run, CALIBRATION_IMAGES)
        calibration_inputs = model_input(calibration, job.run.preprocessing, job.input_kind).numpy()
        quantize_onnx(fp32_path, int8_path, calibration_inputs)
        write_onnx(onnx.load(str(int8_path)), job.path, props, job.metadata.description)
        checks = {**check_onnx(job.path), **int8_checks(job, OnnxPredictor.load(fp32_path), fp32_path)}
    checks["calibration_images"] = len(calibration)
    checks["passed"] = checks["passed"] and onnx_file_ok(checks)
    return Shipped(tensor_interface(job), checks["accuracy"], checks)


def onnx_file_ok(checks: dict[str, Any]) -> bool:
    return bool(checks["onnx_checker"] and checks["single_file"] and checks["dynamic_batch"])


def int8_checks(job: ExportJob, fp32: OnnxPredictor, fp32_path: Path) -> dict[str, Any]:
    """Size, accuracy change and batch-1 latency of the int8 file against its fp32 original."""
    int8 = OnnxPredictor.load(job.path)
    images, labels = job.checks.images, job.checks.labels
    fp32_accuracy = accuracy(fp32.probabilities(images), labels)
    result: dict[str, Any] = compare(int8.probabilities(images), job.checks)
    change = (result["accuracy"] - fp32_accuracy) * 100
    one = model_input(images[:1], job.run.preprocessing, job.input_kind)
    latency = compare_latency({"fp32": lambda: fp32.run_batch(one), "int8": lambda: int8.run_batch(one)})
    fp32_size, int8_size = fp32_path.stat().st_size, job.path.stat().st_size
    result.update(
        fp32_accuracy=fp32_accuracy,
        accuracy_change_points=change,
        max_accuracy_loss_points=MAX_INT8_ACCURACY_LOSS_POINTS,
        fp32_file_size_bytes=fp32_size,
        int8_file_size_bytes=int8_size,
        size_ratio=int8_size / fp32_size,
        latency_ms_batch1=latency,
        speedup_batch1=latency["fp32"] / latency["int8"],
        passed=change >= -MAX_INT8_ACCURACY_LOSS_POINTS,
    )
    return result


def exported_parity(predictor: ExportedPredictor, job: ExportJob) -> dict[str, Any]:
    """:func:`parity_checks` of the exported file on the check images, its boxes included."""
    if not job.localizes:
        return parity_checks(predictor.probabilities(job.checks.images), job.checks)
    probabilities, boxes = predictor.localize(job.checks.images)
    return parity_checks(probabilities, job.checks, boxes)


def ship_torchscript(job: ExportJob) -> Shipped:
    embedded = embedded_metadata(job.run, job.input_kind, job.temperature, job.metadata)
    export_torchscript(job.network(), example_input(job.run.preprocessing, job.input_kind), job.path, embedded)
    checks = exported_parity(TorchScriptPredictor.load(job.path), job)
    note = "TorchScript is deprecated in recent PyTorch releases; prefer ONNX for new apps"
    return Shipped(tensor_interface(job), checks["accuracy"], checks, [note])


def ship_coreml(job: ExportJob) -> Shipped:
    p = job.run.preprocessing
    user_defined = as_string_map(embedded_metadata(job.run, "image", job.temperature, job.metadata))
    normalization = export_coreml(job.model, p, job.run.classes, job.temperature, job.path, job.metadata, user_defined)
    spec = inspect_coreml(job.path)
    metadata = job.metadata
    spec_checks = {
        "image_input": spec["input"] == IMAGE_INPUT and spec["input_type"] == "imageType",
        "size": spec["width"] == spec["height"] == p.input_size,
        "color_layout": spec["color_space"] == ("GRAYSCALE" if p.channels == 1 else "RGB"),
        "scale_and_bias": normalization.matches(spec["scale"], spec["bias"]),
        "outputs": spec["outputs"] == [LABEL_OUTPUT, PROBABILITY_OUTPUT],
        "class_labels": spec["class_labels"] == job.run.classes,
        "metadata": (spec["author"], spec["license"], spec["description"])
        == (metadata.author or "", metadata.license or "", metadata.description or ""),
    }
    checks = {
        "spec": spec_checks,
        "scale": spec["scale"],
        "bias": spec["bias"],
        "numeric_check": "not run: Core ML prediction needs macOS",
        "passed": all(spec_checks.values()),
    }
    interface = {
        "input": {
            "name": IMAGE_INPUT,
            "type": "image",
            "width": p.input_size,
            "height": p.input_size,
            "color_layout": spec["color_space"],
            "scale": normalization.scale,
            "bias": list(normalization.bias),
        },
        "outputs": {
            LABEL_OUTPUT: "most likely class (string)",
            PROBABILITY_OUTPUT: "probability of each class (dictionary)",
        },
    }
    notes = [MACOS_NOTE, "compute precision float16, coremltools' default for ML Programs"]
    if normalization.note:
        notes.append(normalization.note)
    return Shipped(interface, None, checks, notes)
