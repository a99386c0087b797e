"""The ``cnnkit`` command. Each command parses options and calls the Python API, nothing more."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cnnkit.cli.explain import explain, visualize
from cnnkit.cli.export import export
from cnnkit.cli.output import JsonOption, console, fail, print_json, show_warnings_as_lines
from cnnkit.cli.report import report

app = typer.Typer(
    help="Train, evaluate and use convnet image classifiers. Start with: cnnkit train digits --model lenet5",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Augment(StrEnum):
    auto = "auto"
    standard = "standard"
    light = "light"
    none = "none"


class Tta(StrEnum):
    none = "none"
    flip = "flip"


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="A folder of class sub-folders, or a built-in dataset name (digits).")],
    model: Annotated[str, typer.Option(help="Model name; see 'cnnkit models'.")] = "plain_cnn",
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of the first stage (head stage for pretrained models).")
    ] = None,
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="Fine-tuning epochs (pretrained only; default 8 on cached activations, else 3).")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Input size in pixels; default: the model's own.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per training batch.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam) of the first stage.")] = 1e-3,
    fine_tune_lr_factor: Annotated[float, typer.Option(help="Fine-tuning learning rate as a fraction of --lr.")] = 0.3,
    unfreeze: Annotated[
        str, typer.Option(help="What fine-tuning trains: auto (top third of the base's blocks), all, or top:N blocks.")
    ] = "auto",
    head: Annotated[str, typer.Option(help="linear (dropout + dense) or mlp (dense 128 + ReLU + dropout + dense).")] = (
        "linear"
    ),
    class_weight: Annotated[str, typer.Option(help="none, or auto: weigh the loss by inverse class frequency.")] = (
        "none"
    ),
    sampler: Annotated[str, typer.Option(help="shuffle, or balanced: oversample the small classes.")] = "shuffle",
    feature_cache: Annotated[
        bool,
        typer.Option(
            "--feature-cache/--no-feature-cache", help="Train the head on cached base features (pretrained models)."
        ),
    ] = True,
    cache_views: Annotated[
        int | None,
        typer.Option(
            help="Augmented views cached per training image (default 3; 1 without augmentation); "
            "k times more for classes the class weights or balanced sampler emphasize k-fold.",
        ),
    ] = None,
    image_cache: Annotated[str, typer.Option(help="Where decoded pixels live: ram, disk or off.")] = "ram",
    augment: Annotated[
        Augment, typer.Option(help="Augmentation preset; auto = standard for colour, light for grayscale.")
    ] = Augment.auto,
    pretrained: Annotated[
        bool | None, typer.Option("--pretrained/--no-pretrained", help="Start from ImageNet weights.")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout before the last dense layer.")] = None,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty through Adam's weight decay.")] = 0.0,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without a better validation accuracy.")] = 5,
    val_split: Annotated[float, typer.Option(help="Validation fraction when the data has no val folder.")] = 0.15,
    test_split: Annotated[float, typer.Option(help="Test fraction for a flat folder.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed for splits, initialisation and shuffling.")] = 0,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the hardware has it), bf16 or fp32.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Run folder; default runs/<data>-<model>.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Train a classifier and write a run folder (weights, history, curves, metrics)."""
    from cnnkit.train import train as run_training

    run = run_training(
        data,
        model,
        epochs=epochs,
        fine_tune_epochs=fine_tune_epochs,
        image_size=image_size,
        batch_size=batch_size,
        lr=lr,
        fine_tune_lr_factor=fine_tune_lr_factor,
        unfreeze=unfreeze,
        head=head,
        class_weight=class_weight,
        sampler=sampler,
        feature_cache=feature_cache,
        cache_views=cache_views,
        image_cache=image_cache,
        augment=augment.value,
        pretrained=pretrained,
        dropout=dropout,
        weight_decay=weight_decay,
        patience=patience,
        val_split=val_split,
        test_split=test_split,
        seed=seed,
        precision=precision,
        device=device,
        out=out,
        progress=not json_output,
    )
    if json_output:
        print_json({"run": str(run.path), **run.metrics})
        return
    m = run.metrics
    console.print(f"[bold green]done[/] in {m['total_seconds']:.0f} s: run saved to [bold]{run.path}[/]")
    console.print(
        f"best validation accuracy {m['val_accuracy']:.2%} (epoch {m['best_epoch']}, stage {m['best_stage']})"
    )
    if "test_accuracy" in m:
        console.print(f"test accuracy {m['test_accuracy']:.2%} on {m['num_test']} images")
    console.print(f"next: cnnkit evaluate {run.path}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'cnnkit train'.")],
    data: Annotated[
        str | None, typer.Option(help="Other data with the same class folders; default: the run's.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test; default test if present, else val.")] = None,
    tta: Annotated[
        Tta, typer.Option(help="Test-time augmentation: flip averages each image with its mirror.")
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
    table = Table(title=f"{run} — {result.split} split, {len(result.labels)} images, accuracy {result.accuracy:.2%}")
    for column in ("class", "precision", "recall", "f1-score", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in [*result.classes, "macro avg", "weighted avg"]:
        row = result.report[name]
        table.add_row(
            name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1-score']:.3f}", str(int(row["support"]))
        )
    console.print(table)
    print_headline(analysis)
    console.print(f"confusion matrix: {Path(run) / 'confusion_matrix.png'}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    run: Annotated[Path | None, typer.Option(help="A trained run folder.")] = None,
    model: Annotated[str | None, typer.Option(help="A pretrained model used as-is (ImageNet labels).")] = None,
    onnx: Annotated[Path | None, typer.Option(help="An ONNX file from 'cnnkit export', run in ONNX Runtime.")] = None,
    top_k: Annotated[int, typer.Option(help="How many labels per image.")] = 5,
    tta: Annotated[Tta, typer.Option(help="Test-time augmentation.")] = Tta.none,
    json_output: JsonOption = False,
) -> None:
    """Top-k labels for images, from a trained run, a pretrained ImageNet model or an exported ONNX file."""
    from cnnkit.inference import predict as run_prediction

    results = run_prediction(images, run=run, model=model, onnx=onnx, top_k=top_k, tta=tta.value)
    if json_output:
        print_json(results)
        return
    for result in results:
        console.print(f"[bold]{result['image']}[/]")
        for rank, p in enumerate(result["predictions"], 1):
            console.print(f"  {rank}. {p['label']:<30} {p['probability']:.4f}", highlight=False)


@app.command()
def models(json_output: JsonOption = False) -> None:
    """List the model registry: input size, parameters, multiply-adds, pretrained weights."""
    from rich.table import Table

    from cnnkit.models.catalog import describe_models

    rows = describe_models()
    if json_output:
        print_json(rows)
        return
    table = Table(title="cnnkit models (parameters and GMACs at 1,000 classes, default input size)")
    for column in ("name", "input", "params", "GMACs", "pretrained", "ImageNet top-1"):
        justify = "right" if column in ("params", "GMACs", "input") else "left"
        table.add_column(column, justify=justify, no_wrap=True, min_width=len(column))
    table.add_column("description", overflow="ellipsis", no_wrap=True, max_width=60)
    for row in rows:
        top1 = f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "-"
        table.add_row(
            row["name"],
            str(row["input_size"]),
            f"{row['params']:,}",
            f"{row['gmacs']:.2f}",
            row["pretrained"],
            top1,
            row["description"],
        )
    console.print(table)


@app.command()
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
    from cnnkit.models.summary import format_shape

    network = create_model(model, num_classes, image_size=image_size)
    result = summarize(
        network, network.preprocessing.input_size, network.preprocessing.channels, channels_last=not nchw
    )
    if json_output:
        print_json(result.to_dict())
        return
    table = Table(title=f"Model: {model}  input {format_shape(result.input_shape)}")
    for column in ("Layer (type)", "Output Shape", "Param #"):
        table.add_column(column, justify="right" if column == "Param #" else "left")
    for row in result.layers:
        table.add_row(f"{row.name} ({row.type})", format_shape(row.output_shape), f"{row.params:,}")
    console.print(table)
    console.print(f"Total params: {result.total_params:,}")
    console.print(f"Trainable params: {result.trainable_params:,}")
    console.print(f"Non-trainable params: {result.non_trainable_params:,}")


for command in (report, explain, visualize, export, __import__("cnnkit.cli.check", fromlist=["check"]).check):
    app.command()(command)


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
