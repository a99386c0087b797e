"""``cnnkit.predict``: top-k labels for image files from a run, a pretrained model or an exported file.

It sits above :mod:`cnnkit.export` (for ONNX files) and :mod:`cnnkit.predictor` (for PyTorch),
which know nothing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.predictor import ImagePredictor, Predictor, open_subject


def open_predictor(
    run: str | Path | None = None, model: str | None = None, onnx: str | Path | None = None, device: str = "auto"
) -> ImagePredictor:
    """The predictor for exactly one of a trained ``run``, a pretrained ``model`` or an ``onnx`` file."""
    if sum(source is not None for source in (run, model, onnx)) != 1:
        raise CnnkitError(
            "give exactly one of --run RUN (a trained run), --model NAME (a pretrained model) "
            "or --onnx FILE (an exported model)"
        )
    if onnx is not None:
        from cnnkit.export.onnx import OnnxPredictor

        return OnnxPredictor.load(onnx)
    subject = open_subject(run, model)
    return Predictor.create(subject.model, subject.classes, device=device, temperature=subject.temperature)


def predict(
    images: Sequence[str | Path],
    run: str | Path | None = None,
    model: str | None = None,
    top_k: int = 5,
    tta: str = "none",
    device: str = "auto",
    onnx: str | Path | None = None,
) -> list[dict]:
    """Top-k labels for image files, from a trained ``run``, a pretrained ImageNet ``model`` as-is, or an
    ``onnx`` file from ``cnnkit export`` (run in ONNX Runtime with the classes and preprocessing stored in it).

    Returns one ``{"image": path, "predictions": [{"label", "index", "probability"}, ...]}`` per image.
    """
    if top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, not {top_k}")
    predictor = open_predictor(run, model, onnx, device)
    classes = predictor.classes
    probabilities = predictor.probabilities(predictor.load_images(images), tta=tta)
    top = probabilities.topk(min(top_k, len(classes)), dim=1)
    return [
        {
            "image": str(path),
            "predictions": [
                {"label": classes[int(i)], "index": int(i), "probability": float(p)}
                for p, i in zip(values, indices, strict=True)
            ],
        }
        for path, values, indices in zip(images, top.values, top.indices, strict=True)
    ]
