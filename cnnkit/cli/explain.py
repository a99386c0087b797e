"""``cnnkit explain`` (Grad-CAM heatmaps) and ``cnnkit visualize`` (activations, filter patterns).

Both take a trained run folder or ``--model NAME`` (a pretrained network as-is, ImageNet labels)
and write one PNG, into the current folder unless ``--out`` says otherwise.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnkit.cli.output import JsonOption, console, print_json
from cnnkit.errors import CnnkitError

ModelOption = Annotated[
    str | None, typer.Option(help="A pretrained model used as-is (ImageNet labels), instead of RUN.")
]
OutOption = Annotated[Path | None, typer.Option(help="PNG to write; default: a name in the current folder.")]


class Method(StrEnum):
    gradcam = "gradcam"
    gradcam_pp = "gradcam++"


VIEWS = {"activations": "activations IMG", "filters": "filters"}


def _split_run(targets: list[str], model: str | None, count: int, usage: str) -> tuple[str | None, list[str]]:
    """Separate RUN (absent with --model) from the ``count`` positional arguments that follow it."""
    run, rest = (None, targets) if model is not None else (targets[0] if targets else None, targets[1:])
    if (model is None and run is None) or len(rest) != count:
        raise CnnkitError(f"usage: {usage}")
    return run, rest


def _label(classes: list[str], index: int, probability: float) -> dict:
    return {"label": classes[index], "index": index, "probability": probability}


def explain(
    targets: Annotated[list[str], typer.Argument(metavar="[RUN] IMG", help="A run folder and an image file.")],
    model: ModelOption = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="Class to explain; default: the predicted one.")
    ] = None,
    method: Annotated[
        Method, typer.Option(help="gradcam, or gradcam++ (better with several objects).")
    ] = Method.gradcam,
    layer: Annotated[
        str | None,
        typer.Option(help="Layer to weigh (a name from 'cnnkit summary'); default: the last convolutional block."),
    ] = None,
    top_k: Annotated[int, typer.Option(help="How many class probabilities to report.")] = 5,
    out: OutOption = None,
    json_output: JsonOption = False,
) -> None:
    """Grad-CAM: a heatmap of where in the image the evidence for a class lies, over the image."""
    from cnnkit.explain import class_index, explain_image, open_subject, read_image

    if top_k < 1:
        raise CnnkitError(f"--top-k must be at least 1, not {top_k}")
    run, (image_path,) = _split_run(targets, model, 1, "cnnkit explain RUN IMG | cnnkit explain --model NAME IMG")
    subject = open_subject(run, model)
    image = read_image(image_path, subject.model.preprocessing.channels)
    index = None if class_name is None else class_index(subject.classes, class_name)
    explanation = explain_image(
        subject.model, image, index, method=method.value, layer=layer, temperature=subject.temperature
    )
    out = out or Path(f"{Path(image_path).stem}-{method.value.replace('++', 'pp')}.png")
    explanation.save(subject.classes, out)
    explained = explanation.class_index
    probability = float(explanation.probabilities[explained])
    peak = explanation.peak
    if json_output:
        print_json(
            {
                "image": image_path,
                "out": str(out),
                "method": method.value,
                "layer": explanation.layer,
                "class": _label(subject.classes, explained, probability),
                "peak": None if peak is None else {"x": peak[0], "y": peak[1]},
                "scores": [_label(subject.classes, i, p) for i, p in explanation.top(top_k)],
            }
        )
        return
    where = "nothing in the image speaks for it" if peak is None else f"hottest at x={peak[0]}, y={peak[1]}"
    console.print(
        f"{subject.classes[explained]} ({probability:.3f}): {method.value} from {explanation.layer}, {where}",
        highlight=False,
    )
    console.print(f"saved {out}", highlight=False)


def visualize(
    targets: Annotated[
        list[str],
        typer.Argument(metavar="[RUN] activations IMG | [RUN] filters", help="What to draw, after the run folder."),
    ],
    model: ModelOption = None,
    layers: Annotated[int, typer.Option(help="activations: how many layers, spread from the input to the output.")] = 8,
    layer: Annotated[
        str | None,
        typer.Option(help="filters: layer name (see 'cnnkit summary'); default: a convolution halfway through."),
    ] = None,
    filters: Annotated[int, typer.Option(help="filters: how many, from filter 0 on.")] = 16,
    steps: Annotated[int, typer.Option(help="filters: gradient ascent steps.")] = 40,
    size: Annotated[int | None, typer.Option(help="filters: pattern side; default: input size, at most 128.")] = None,
    out: OutOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every channel of the first layers' outputs for an image, or the patterns a layer's filters respond to."""
    from cnnkit.explain import (
        filter_patterns,
        image_activations,
        open_subject,
        plot_activations,
        plot_filter_patterns,
        read_image,
    )

    after_run = targets if model is not None else targets[1:]
    view = after_run[0] if after_run else ""
    if view not in VIEWS:
        raise CnnkitError(f"usage: cnnkit visualize RUN|--model NAME {' | '.join(VIEWS.values())}")
    run, rest = _split_run(targets, model, len(VIEWS[view].split()), f"cnnkit visualize RUN|--model NAME {VIEWS[view]}")
    subject = open_subject(run, model)
    if view == "activations":
        image_path = rest[1]
        activations = image_activations(
            subject.model, read_image(image_path, subject.model.preprocessing.channels), layers
        )
        out = plot_activations(activations, out or f"{Path(image_path).stem}-activations.png")
        result = {
            "out": str(out),
            "layers": [{"name": a.name, "type": a.kind, "shape": list(a.maps.shape)} for a in activations],
        }
    else:
        patterns = filter_patterns(subject.model, layer, filters, steps=steps, size=size)
        out = plot_filter_patterns(patterns, out or f"filters-{patterns.layer}.png")
        result = {
            "out": str(out),
            "layer": patterns.layer,
            "filters": [
                {"index": i, "start_activation": float(start), "end_activation": float(end)}
                for i, (start, end) in enumerate(zip(patterns.start_activation, patterns.end_activation, strict=True))
            ],
        }
    if json_output:
        print_json(result)
        return
    console.print(f"saved {out}", highlight=False)
