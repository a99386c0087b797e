"""Core ML: an ML Program (``.mlpackage``) that takes an image and returns ``label`` and ``labelProbability``.

The input is an ImageType named ``image``, so an app passes a CVPixelBuffer (Xcode's generated class
takes it as is) and Core ML applies ``pixel * scale + bias`` per channel: scale = 1 / (255 * std),
bias = -mean / std. The conversion goes through ``torch.export``: with coremltools 9 the
``torch.jit.trace`` route fails on EfficientNet-Lite0. Core ML runs models only on Apple systems,
so elsewhere the package is checked from its spec (input, outputs, labels, scale and bias, metadata).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnkit.export.card import ModelMetadata
from cnnkit.export.network import ExportedClassifier, example_input
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import Preprocessing

IMAGE_INPUT = "image"
LABEL_OUTPUT = "label"
PROBABILITY_OUTPUT = "labelProbability"
MACOS_NOTE = (
    "Core ML prediction needs macOS: the package was checked from its spec (input, outputs, class labels, "
    "scale and bias, metadata), not run; compare its predictions with the card's on a Mac"
)


@dataclass(frozen=True)
class ImageNormalization:
    """How the image input is normalized: by the ImageType alone, or partly inside the model."""

    input_kind: str
    scale: float
    bias: tuple[float, ...]
    note: str | None = None

    def matches(self, scale: float, bias: list[float]) -> bool:
        """Whether a spec's scale and bias (stored as float32) are these."""
        return (
            math.isclose(scale, self.scale, rel_tol=1e-6)
            and len(bias) == len(self.bias)
            and all(
                math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-7) for got, want in zip(bias, self.bias, strict=True)
            )
        )


def image_normalization(preprocessing: Preprocessing) -> ImageNormalization:
    """Scale and bias for the ImageType; exact even when std differs by channel.

    ImageType has one scale for all channels, so with per-channel std (ImageNet's 0.229, 0.224, 0.225)
    any single scale would be an approximation. Instead the image input then only maps pixels to
    [0, 1] and the model subtracts the mean and divides by each channel's std itself.
    """
    mean, std = preprocessing.mean, preprocessing.std
    if len(set(std)) == 1:
        return ImageNormalization("normalized", 1.0 / (255.0 * std[0]), tuple(-m / std[0] for m in mean))
    note = (
        f"std differs by channel {tuple(std)} and Core ML's ImageType has one scale, so the image input only "
        "scales pixels to [0, 1] and the model normalizes each channel itself (exact, no approximation)"
    )
    return ImageNormalization("unit", 1.0 / 255.0, (0.0,) * preprocessing.channels, note)


def import_coremltools() -> Any:
    """coremltools, without its import-time warnings about native libraries that exist only on macOS."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import coremltools
    finally:
        logger.setLevel(level)
    return coremltools


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Keep coremltools' tqdm bars ("Running MIL ... pipeline", passes/s), written to stderr, out of cnnkit's output."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def export_coreml(
    model: Classifier,
    preprocessing: Preprocessing,
    classes: list[str],
    temperature: float,
    path: Path,
    metadata: ModelMetadata,
    user_defined: dict[str, str],
) -> ImageNormalization:
    """Convert ``model`` to an ML Program classifier and save it as ``path`` (a ``.mlpackage`` folder)."""
    ct = import_coremltools()
    normalization = image_normalization(preprocessing)
    network = ExportedClassifier(model, preprocessing, normalization.input_kind, temperature).eval()
    example = example_input(preprocessing, normalization.input_kind, batch=1)
    program = torch.export.export(network, (example,)).run_decompositions({})
    grayscale = preprocessing.channels == 1
    image = ct.ImageType(
        name=IMAGE_INPUT,
        shape=tuple(example.shape),
        scale=normalization.scale,
        bias=normalization.bias[0] if grayscale else list(normalization.bias),
        color_layout=ct.colorlayout.GRAYSCALE if grayscale else ct.colorlayout.RGB,
    )
    with warnings.catch_warnings(), quiet_progress_bars():
        warnings.simplefilter("ignore", DeprecationWarning)  # hundreds, from coremltools' own internals
        converted = ct.convert(
            program,
            inputs=[image],
            classifier_config=ct.ClassifierConfig(classes, predicted_feature_name=LABEL_OUTPUT),
            convert_to="mlprogram",
        )
    spec = converted.get_spec()
    ct.utils.rename_feature(spec, f"{LABEL_OUTPUT}_probs", PROBABILITY_OUTPUT)
    describe(spec, preprocessing, metadata, user_defined)
    finished = ct.models.MLModel(spec, weights_dir=converted.weights_dir, skip_model_load=True)
    save_package(finished, path)
    return normalization


def describe(spec: Any, preprocessing: Preprocessing, metadata: ModelMetadata, user_defined: dict[str, str]) -> None:
    """Author, license, description and the texts Xcode shows for the input and outputs."""
    fields = spec.description.metadata
    fields.author = metadata.author or ""
    fields.license = metadata.license or ""
    fields.shortDescription = metadata.description or ""
    fields.userDefined.update(user_defined)
    size, colour = preprocessing.input_size, "grayscale" if preprocessing.channels == 1 else "RGB"
    texts = {
        IMAGE_INPUT: f"{size}x{size} {colour} image: center crop {preprocessing.crop_pct:g} of the short side, "
        f"resized {preprocessing.interpolation}",
        LABEL_OUTPUT: "Most likely class",
        PROBABILITY_OUTPUT: "Probability of each class",
    }
    for feature in [*spec.description.input, *spec.description.output]:
        feature.shortDescription = texts[feature.name]


def save_package(model: Any, path: Path) -> None:
    """Save into a temporary folder beside ``path``, then rename it into place (replacing an older package)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save(str(staging / path.name))
        if path.exists():
            os.replace(path, staging / "replaced")
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def inspect_coreml(path: Path) -> dict[str, Any]:
    """Read a package's spec back: image input, outputs, class labels, scale and bias, metadata. Works on any OS."""
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    description = spec.description
    image = description.input[0]
    function = spec.mlProgram.functions["main"]
    operations = function.block_specializations[function.opset].operations
    constants = {op.outputs[0].name: op.attributes["val"] for op in operations if op.type == "const"}
    produced = {op.outputs[0].name: op for op in operations}

    def image_step(step: str, default: list[float]) -> list[float]:
        """The constant of the ``image__scaled__`` (mul) or ``image__biased__`` (add) op coremltools inserts,
        which it leaves out when the scale is 1 or the bias 0."""
        op = produced.get(f"{image.name}__{step}__")
        return list(constants[op.inputs["y"].arguments[0].name].immediateValue.tensor.floats.values) if op else default

    classify = next(op for op in operations if op.type == "classify")
    labels = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    image_type = image.type.imageType
    color_space = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image_type.colorSpace)
    channels = 1 if color_space == "GRAYSCALE" else 3
    return {
        "input": image.name,
        "input_type": image.type.WhichOneof("Type"),
        "width": image_type.width,
        "height": image_type.height,
        "color_space": color_space,
        "scale": image_step("scaled", [1.0])[0],
        "bias": image_step("biased", [0.0] * channels),
        "outputs": [feature.name for feature in description.output],
        "predicted_feature": description.predictedFeatureName,
        "predicted_probabilities": description.predictedProbabilitiesName,
        "class_labels": [label.immediateValue.tensor.strings.values[0] for label in labels],
        "author": description.metadata.author,
        "license": description.metadata.license,
        "description": description.metadata.shortDescription,
        "feature_descriptions": {f.name: f.shortDescription for f in [*description.input, *description.output]},
        "user_defined": dict(description.metadata.userDefined),
    }
