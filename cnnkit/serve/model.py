"""The model behind the service: a run folder or an exported ONNX file, with ``cnnkit predict``'s preprocessing.

This is the one module of :mod:`cnnkit.serve` that imports the run, predictor and export API, so
that moving those modules changes a few lines here and nowhere else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnkit.data.decode import UndecodableImage, decode_bytes
from cnnkit.errors import CnnkitError
from cnnkit.export import export
from cnnkit.export.card import METADATA_PREFIX, card_path
from cnnkit.export.onnx import OnnxPredictor
from cnnkit.fileio import read_json
from cnnkit.models.config import Preprocessing
from cnnkit.predictor import Predictor, prepare_image
from cnnkit.run import CALIBRATION_FILE, Run, load_run

__all__ = ["ModelSource", "ServedModel", "UndecodableImage", "load_served_model", "resolve_source"]

ENGINES = ("onnx", "torch")
VERSION_DIGITS = 12
OVERLAY_MAX_SIDE = 1024  # Grad-CAM overlays of phone photos are shrunk to this for the page
MODEL_BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
TIMED_RUNS = 3


@dataclass(frozen=True)
class ModelSource:
    """What to serve, resolved: the ONNX file (for the onnx engine) and the run folder (for torch and explain)."""

    engine: str
    onnx: Path | None = None
    run: Path | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"engine": self.engine, "onnx": _text(self.onnx), "run": _text(self.run)}

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> ModelSource:
        return cls(str(data["engine"]), _path(data.get("onnx")), _path(data.get("run")))


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def resolve_source(target: str | Path, engine: str = "onnx") -> ModelSource:
    """A run folder or ``.onnx`` file -> what to load; a run served on ONNX Runtime is exported first if needed."""
    if engine not in ENGINES:
        raise CnnkitError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    path = Path(target)
    if path.suffix == ".onnx":
        if engine == "torch":
            raise CnnkitError(f"{path} is an ONNX file; --engine torch needs a run folder (or drop --engine)")
        if not path.is_file():
            raise CnnkitError(f"ONNX model {path} does not exist; pass a file written by 'cnnkit export'")
        return ModelSource("onnx", onnx=path)
    run = load_run(path)
    if engine == "torch":
        return ModelSource("torch", run=run.path)
    return ModelSource("onnx", onnx=exported_onnx(run), run=run.path)


def exported_onnx(run: Run) -> Path:
    """``RUN/export/RUNNAME.onnx``, exported (and checked against PyTorch) when missing or older than the weights."""
    path = run.path / "export" / f"{run.path.name}.onnx"
    inputs = [run.path / "model.safetensors", run.path / CALIBRATION_FILE]
    newest_input = max(p.stat().st_mtime for p in inputs if p.is_file())
    if path.is_file() and path.stat().st_mtime >= newest_input:
        card = card_path(path)
        if card.is_file() and not read_json(card)["checks"]["passed"]:
            raise CnnkitError(f"{path} failed its export checks (see {card}); delete it to re-export or --engine torch")
        return path
    result = export(run, "onnx")
    if not result.passed:
        card = result.card_path
        raise CnnkitError(f"exporting {run.path} to ONNX failed its checks (see {card}); try --engine torch")
    return result.path


@dataclass
class Explainer:
    """Grad-CAM on a run's PyTorch model, for ``POST /explain``."""

    model: torch.nn.Module
    classes: list[str]
    temperature: float

    def explain(self, image: torch.Tensor, class_index: int | None) -> dict[str, Any]:
        """A decoded uint8 image -> the overlay PNG and what it shows."""
        from PIL import Image

        from cnnkit.explain import explain_image

        explanation = explain_image(self.model, image, class_index, temperature=self.temperature)
        overlay = Image.fromarray(explanation.overlay())
        overlay.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
        buffer = io.BytesIO()
        overlay.save(buffer, format="PNG")
        index = explanation.class_index
        return {
            "png": buffer.getvalue(),
            "label": self.classes[index],
            "index": index,
            "probability": float(explanation.probabilities[index]),
            "layer": explanation.layer,
        }

    def class_index(self, name: str) -> int:
        """The index of class ``name``; an unknown name is a CnnkitError that lists the classes."""
        from cnnkit.explain import class_index

        return class_index(self.classes, name)


@dataclass
class ServedModel:
    """The loaded model: how to turn bytes into the model's input and a batch into probabilities."""

    name: str
    version: str
    engine: str
    classes: list[str]
    preprocessing: Preprocessing
    run_batch: Callable[[torch.Tensor], torch.Tensor]
    facts: dict[str, Any] = field(default_factory=dict)
    explainer: Explainer | None = None

    def decode(self, data: bytes) -> torch.Tensor:
        """Encoded image bytes -> uint8 (C, H, W), as ``cnnkit predict`` decodes a file (first frame if animated).

        Raises :class:`UndecodableImage` for bytes that are not a readable image.
        """
        image = decode_bytes(data, self.preprocessing.channels)
        return image[0] if image.dim() == 4 else image

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """A decoded image -> the uint8 crop the model sees, exactly as ``cnnkit predict`` prepares it."""
        return prepare_image(image, self.preprocessing)

    def probabilities(self, images: torch.Tensor, model_batch: int | None = None) -> torch.Tensor:
        """Prepared uint8 images (N, C, H, W) -> class probabilities (N, classes), ``model_batch`` images a pass."""
        step = model_batch or len(images)
        if len(images) <= step:
            return self.run_batch(images)
        return torch.cat([self.run_batch(images[start : start + step]) for start in range(0, len(images), step)])

    def blank(self, size: int) -> torch.Tensor:
        p = self.preprocessing
        return torch.zeros(size, p.channels, p.input_size, p.input_size, dtype=torch.uint8)

    def warm_up(self, batch_sizes: tuple[int, ...]) -> None:
        """Run each batch size once so the first real requests do not pay for allocation and kernel selection."""
        for size in batch_sizes:
            self.run_batch(self.blank(size))

    def fastest_batch(self, largest: int) -> int:
        """The forward-pass size, a power of two up to ``largest``, that takes the least time per image (best of 3).

        Bigger is not always faster: on 2 busy Zen 4 cores, ONNX Runtime spent 14 ms of CPU time an image
        on EfficientNet-Lite0 (fp32) one at a time and 24 ms in batches of 8, whose activations no longer
        fit in cache; on a GPU the time per image falls with the batch instead.
        """
        per_image = {}
        for size in [size for size in MODEL_BATCH_CANDIDATES if size <= largest] or [1]:
            images = self.blank(size)
            self.run_batch(images)
            runs = []
            for _ in range(TIMED_RUNS):
                started = time.perf_counter()
                self.run_batch(images)
                runs.append(time.perf_counter() - started)
            per_image[size] = min(runs) / size
        return min(per_image, key=per_image.__getitem__)


def file_version(path: Path) -> str:
    """The first digits of the file's SHA-256: changes whenever the weights do."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:VERSION_DIGITS]


def load_served_model(source: ModelSource, device: str = "auto") -> ServedModel:
    """Load what :func:`resolve_source` found; a run also gets Grad-CAM, whatever the engine."""
    run = None if source.run is None else load_run(source.run)
    explainer = None
    if run is not None:
        explainer = Explainer(run.load_model(), run.classes, run.temperature)
    predictor: OnnxPredictor | Predictor
    if source.engine == "onnx":
        assert source.onnx is not None
        predictor = OnnxPredictor.load(source.onnx)
        version, facts = file_version(source.onnx), onnx_facts(source.onnx, predictor)
    else:
        assert run is not None and explainer is not None
        predictor = Predictor.create(explainer.model, run.classes, device=device, temperature=explainer.temperature)
        version = file_version(run.path / "model.safetensors")
        facts = {"device": str(predictor.device), "precision": predictor.precision}
    if run is not None:
        facts.update(run_facts(run))
    return ServedModel(
        name=run.path.name if run is not None else Path(str(source.onnx)).stem,
        version=version,
        engine=source.engine,
        classes=predictor.classes,
        preprocessing=predictor.preprocessing,
        run_batch=predictor.probabilities,
        facts=facts,
        explainer=explainer,
    )


def run_facts(run: Run) -> dict[str, Any]:
    """Model-card facts of a run: architecture, training recipe and the accuracies it reached."""
    config, facts, metrics = run.config, run.facts, run.metrics
    training = dict(data=config.data, epochs=facts.epochs, fine_tune_epochs=facts.fine_tune_epochs)
    training.update(batch_size=config.batch_size, lr=config.lr, seed=config.seed)
    return {
        "run": str(run.path),
        "architecture": config.model,
        "pretrained": facts.pretrained,
        "parameters": sum(p.numel() for p in run.load_model().parameters()),
        "temperature": run.temperature,
        "training": training,
        "metrics": {key: metrics[key] for key in ("val_accuracy", "test_accuracy", "num_test") if key in metrics},
    }


def onnx_facts(path: Path, predictor: OnnxPredictor) -> dict[str, Any]:
    """Model-card facts of an ONNX file: what cnnkit wrote into it and, if present, its export card's checks."""
    props = predictor.session.get_modelmeta().custom_metadata_map
    embedded = {key.removeprefix(METADATA_PREFIX): value for key, value in props.items()}
    facts: dict[str, Any] = {
        "onnx": str(path),
        "file_size_bytes": os.path.getsize(path),
        "input_kind": predictor.input_kind,
        **{key: embedded[key] for key in ("author", "license", "description") if key in embedded},
    }
    if "temperature" in embedded:
        facts["temperature"] = json.loads(embedded["temperature"])
    card = card_path(path)
    if card.is_file():
        content = read_json(card)
        facts["export"] = {
            "int8": content.get("int8"),
            "architecture": content.get("model"),
            "validation": content.get("validation"),
            "checks_passed": content.get("checks", {}).get("passed"),
        }
    return facts
