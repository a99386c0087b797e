"""``cnnkit.predict``: top-k labels for image files from a run, a pretrained model or an exported file.

It sits above :mod:`cnnkit.export` (for ONNX files) and :mod:`cnnkit.predictor` (for PyTorch),
which know nothing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cnnkit.data.boxes import image_size, pixel_box
from cnnkit.data.folders import expand_image_paths
from cnnkit.data.prepare import prepare_images
from cnnkit.errors import CnnkitError
from cnnkit.predictor import ImagePredictor, Predictor, open_subject
from cnnkit.tta import check_tta


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
    draw: str | Path | None = None,
) -> list[dict]:
    """Top-k labels for image files (folders give their images), from a trained ``run``, a pretrained ImageNet
    ``model`` as-is, or an ``onnx`` file from ``cnnkit export`` (run in ONNX Runtime with the classes and
    preprocessing stored in it).

    Returns one ``{"image": path, "predictions": [{"label", "index", "probability"}, ...]}`` per image;
    a file that cannot be read gets ``{"image": path, "error": why}`` instead, and the others are answered.
    A localization run's answers also hold ``"box": [xmin, ymin, xmax, ymax]`` in pixels of the original
    image and its ``"image_size": [width, height]``; ``draw`` (a ``.png`` file for one image, else a
    folder) writes each photo with its box and label drawn on it, named in the answer's ``"drawn"``.
    """
    if top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, not {top_k}")
    check_tta(tta)
    paths = expand_image_paths(images)
    predictor = open_predictor(run, model, onnx, device)
    localizes = getattr(predictor, "localizes", False)
    if draw is not None and not localizes:
        raise CnnkitError("--draw needs a localization run (trained with boxes) or its ONNX export")
    if draw is not None and Path(draw).suffix.lower() == ".png" and len(paths) > 1:
        raise CnnkitError(f"--draw {draw} names one file but {len(paths)} images were given; give a folder")
    prepared = prepare_images(paths, predictor.preprocessing)
    readable = [i for i, item in enumerate(prepared) if not isinstance(item, str)]
    answers: list[dict] = [{"image": str(path), "error": item} for path, item in zip(paths, prepared, strict=True)]
    if not readable:
        return answers
    batch = torch.stack([prepared[i] for i in readable])
    probabilities, boxes = (
        predictor.localize(batch, tta=tta) if localizes else (predictor.probabilities(batch, tta=tta), None)
    )
    top = probabilities.topk(min(top_k, len(predictor.classes)), dim=1)
    for row, i in enumerate(readable):
        answers[i] = {
            "image": str(paths[i]),
            "predictions": [
                {"label": predictor.classes[int(k)], "index": int(k), "probability": float(p)}
                for p, k in zip(top.values[row], top.indices[row], strict=True)
            ],
        }
        if boxes is not None:
            width, height = image_size(paths[i])
            answers[i].update(box=pixel_box(boxes[row], width, height), image_size=[width, height])
    if draw is not None:
        draw_answers([answers[i] for i in readable], Path(draw))
    return answers


def draw_answers(answers: list[dict], out: Path) -> None:
    """Each answered photo with its box and top label drawn, as ``out`` (one image, a ``.png`` name) or in ``out/``."""
    from torchvision.io import write_png

    from cnnkit.evaluate.boxes import draw_boxes
    from cnnkit.fileio import atomic_path
    from cnnkit.predictor import read_image

    single = out.suffix.lower() == ".png"
    taken: set[str] = set()
    for answer in answers:
        name = Path(answer["image"]).stem
        while f"{name}.png" in taken:  # photos of the same name from different folders
            name += "_"
        taken.add(f"{name}.png")
        target = out if single else out / f"{name}.png"
        best = answer["predictions"][0]
        drawn = draw_boxes(
            read_image(answer["image"], 3), [answer["box"]], [f"{best['label']} {best['probability']:.2f}"], ["red"]
        )
        with atomic_path(target) as tmp:
            write_png(drawn, str(tmp))
        answer["drawn"] = str(target)
