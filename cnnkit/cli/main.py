"""The ``cnnkit`` command. Each command parses options and calls the Python API, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnkit.cli.check import check
from cnnkit.cli.command import CnnkitCommand
from cnnkit.cli.explain import explain, visualize
from cnnkit.cli.export import export
from cnnkit.cli.models import models
from cnnkit.cli.output import JsonOption, console, errors, fail, print_json, show_warnings_as_lines
from cnnkit.cli.report import report
from cnnkit.cli.serve import serve
from cnnkit.cli.shard import shard
from cnnkit.cli.train import train
from cnnkit.cli.tune import tune
from cnnkit.config import Tta

app = typer.Typer(
    help="Train, evaluate and use convnet image classifiers. Start with: cnnkit train digits --model lenet5",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("cnnkit")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from cnnkit import __version__ as number
        print(f"cnnkit {number}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Train, evaluate and use convnet image classifiers. Start with: cnnkit train digits --model lenet5"""


@app.command(cls=CnnkitCommand)
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'cnnkit train'.")],
    data: Annotated[
        str | None, typer.Option(help="Other data with the same class folders; default: the run's.")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="train, val (valid, validation), test or all; default test if present, else val; "
            "--data without split folders: all."
        ),
    ] = None,
    tta: Annotated[
        Tta,
        typer.Option(
            help="Test-time augmentation: flip averages each image with its mirror; shift_flip adds both "
            "shifted by a pixel per 32 of width, both ways (6 views)."
        ),
    ] = Tta.none,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="First fit a temperature on the validation split; predict applies it.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, top-k, calibration error, confused classes (saved into the run)."""
    from rich.table import Table

    from cnnkit.cli.report import print_headline
    from cnnkit.evaluate import analyze

    analysis = analyze(run, data=data, split=split, tta=tta.value, calibrate_first=calibrate)
    result = analysis.evaluation
    if json_output:
        print_json(analysis.to_dict())
        return
    table = Table(title=f"{run} — {result.describe()}: {len(result.labels)} images, accuracy {result.accuracy:.2%}")
    for column in ("class", "precision", "recall", "f1-score", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in [*result.classes, "macro avg", "weighted avg"]:
        row = result.report[name]
        table.add_row(
            name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1-score']:.3f}", str(int(row["support"]))
        )
    console.print(table)
    if result.localization is not None:
        print_localization(result.localization)
    print_headline(analysis)
    console.print(f"saved {analysis.files['evaluation']} and {analysis.files['confusion_matrix']}")


def print_localization(scores: dict) -> None:
    """The box table of a localization run: accuracy, mean IoU, IoU >= 0.5 / 0.75 and both right, per class."""
    from rich.table import Table

    table = Table(title="Boxes: IoU with the annotated box; both right = class right and IoU >= 0.5")
    for column in ("class", "accuracy", "mean IoU", "IoU>=0.5", "IoU>=0.75", "both right", "images"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in [*scores["per_class"].items(), ("all", scores)]:
        if row["num_images"]:
            shares = [f"{row[key]:.2%}" for key in ("accuracy", "iou50", "iou75", "both_right")]
            table.add_row(name, shares[0], f"{row['mean_iou']:.3f}", *shares[1:], str(row["num_images"]))
    console.print(table)


@app.command(cls=CnnkitCommand)
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders of them.")],
    run: Annotated[Path | None, typer.Option(help="A trained run folder.")] = None,
    model: Annotated[str | None, typer.Option(help="A pretrained model used as-is (ImageNet labels).")] = None,
    onnx: Annotated[Path | None, typer.Option(help="An ONNX file from 'cnnkit export', run in ONNX Runtime.")] = None,
    top_k: Annotated[int, typer.Option(help="How many labels per image.")] = 5,
    tta: Annotated[Tta, typer.Option(help="Test-time augmentation.")] = Tta.none,
    draw: Annotated[
        Path | None,
        typer.Option(
            help="Localization runs: draw box and label on each photo, into OUT.png (one image) or folder OUT."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Top-k labels for images, from a trained run, a pretrained ImageNet model or an exported ONNX file;
    a localization run also gives the object's box in pixels of the original image."""
    from cnnkit.inference import predict as run_prediction

    results = run_prediction(images, run=run, model=model, onnx=onnx, top_k=top_k, tta=tta.value, draw=draw)
    failed = [result for result in results if "error" in result]
    if json_output:
        print_json(results)
    for result in [] if json_output else results:
        if "error" in result:
            continue
        console.print(f"[bold]{result['image']}[/]")
        for rank, p in enumerate(result["predictions"], 1):
            console.print(f"  {rank}. {p['label']:<30} {p['probability']:.4f}", highlight=False)
        if "box" in result:
            corners = ", ".join(f"{value:g}" for value in result["box"])
            drawn = f"  (drawn: {result['drawn']})" if "drawn" in result else ""
            console.print(f"  box (xmin, ymin, xmax, ymax in pixels): {corners}{drawn}", highlight=False)
    for result in failed:
        errors.print(f"[bold red]error:[/] {result['image']}: {result['error']}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)  # some images got no answer; the others did


app.command(cls=CnnkitCommand)(models)


@app.command(cls=CnnkitCommand)
def summary(
    model: Annotated[str, typer.Argument(help="Model name; see 'cnnkit models'.")],
    num_classes: Annotated[int, typer.Option(help="Number of output classes.")] = 1000,
    image_size: Annotated[int | None, typer.Option(help="Input size; default: the model's own.")] = None,
    nchw: Annotated[
        bool, typer.Option("--nchw", help="Show shapes as PyTorch's (N, C, H, W) instead of Keras' (None, H, W, C).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """A Keras-style layer table: output shapes and parameter counts."""
    from rich.table import Table

    from cnnkit.models import create_model, summarize
    from cnnkit.models.registry import get_model_info
    from cnnkit.models.summary import format_shape
    from cnnkit.train.input_size import uses_small_input_stem

    small = image_size is not None and uses_small_input_stem(get_model_info(model), image_size, pretrained=False)
    network = create_model(model, num_classes, image_size=image_size, **({"small_input": True} if small else {}))
    result = summarize(
        network, network.preprocessing.input_size, network.preprocessing.channels, channels_last=not nchw
    )
    if json_output:
        print_json(result.to_dict())
        return
    stem = ", small-input stem" if small else ""
    table = Table(title=f"Model: {model}  input {format_shape(result.input_shape)}{stem}")
    for column in ("Layer (type)", "Output Shape", "Param #"):
        table.add_column(column, justify="right" if column == "Param #" else "left")
    for row in result.layers:
        table.add_row(f"{row.name} ({row.type})", format_shape(row.output_shape), f"{row.params:,}")
    console.print(table)
    console.print(f"Total params: {result.total_params:,}")
    console.print(f"Trainable params: {result.trainable_params:,}")
    console.print(f"Non-trainable params: {result.non_trainable_params:,}")


for command in (train, tune, report, explain, visualize, export, serve, check, shard):
    app.command(cls=CnnkitCommand)(command)


def main() -> None:
    """Entry point: user errors become one red line and exit status 2, never a traceback."""
    from cnnkit.errors import CnnkitError

    show_warnings_as_lines()
    try:
        app()
    except CnnkitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; files already written are complete (each is written atomically)", code=130)


if __name__ == "__main__":
    main()
