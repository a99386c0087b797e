"""``cnnkit.predict``: top-k labels for image files from a run, a pretrained model or an exported file.

It sits above :mod:`cnnkit.export` (for ONNX files) and :mod:`cnnkit.predictor` (for PyTorch),
which know nothing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cnnkit.data.folders import expand_image_paths
from cnnkit.data.prepare import prepare_images
from cnnkit.errors import CnnkitError
from cnnkit.predictor import ImagePredictor, Predictor, check_tta, open_subject


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
    """Top-k labels for image files (folders give their images), from a trained ``run``, a pretrained ImageNet
    ``model`` as-is, or an ``onnx`` file from ``cnnkit export`` (run in ONNX Runtime with the classes and
    preprocessing stored in it).

    Returns one ``{"image": path, "predictions": [{"label", "index", "probability"}, ...]}`` per image;
    a file that cannot be read gets ``{"image": path, "error": why}`` instead, and the others are answered.
    """
    if top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, not {top_k}")
    check_tta(tta)
    paths = expand_image_paths(images)
    predictor = open_predictor(run, model, onnx, device)
    prepared = prepare_images(paths, predictor.preprocessing)
    readable = [i for i, item in enumerate(prepared) if not isinstance(item, str)]
    answers: list[dict] = [{"image": str(path), "error": item} for path, item in zip(paths, prepared, strict=True)]
    if readable:
        probabilities = predictor.probabilities(torch.stack([prepared[i] for i in readable]), tta=tta)
        top = probabilities.topk(min(top_k, len(predictor.classes)), dim=1)
        for i, values, indices in zip(readable, top.values, top.indices, strict=True):
            answers[i] = {
                "image": str(paths[i]),
                "predictions": [
                    {"label": predictor.classes[int(k)], "index": int(k), "probability": float(p)}
                    for p, k in zip(values, indices, strict=True)
                ],
            }
    return answers
