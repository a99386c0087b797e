"""``cnnkit export``: options and printing only; the work is :func:`cnnkit.export.export`.

Heavy imports stay inside the function so that ``cnnkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnkit.cli.output import JsonOption, console, fail, print_json

if TYPE_CHECKING:
    from cnnkit.export import ExportResult


def export(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'cnnkit train'.")],
    format: Annotated[str, typer.Option("--format", help="onnx, coreml or torchscript.")] = "onnx",
    int8: Annotated[
        bool, typer.Option("--int8", help="ONNX only: int8 static quantization calibrated on training images.")
    ] = False,
    raw_input: Annotated[
        bool,
        typer.Option(
            "--raw-input", help="ONNX/TorchScript: take uint8 RGB pixels (N, H, W, 3); normalization is built in."
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output path; default RUN/export/RUNNAME[.raw][.int8].EXT.")] = None,
    author: Annotated[str | None, typer.Option(help="Author stored in the model's metadata.")] = None,
    license: Annotated[str | None, typer.Option(help="License stored in the model's metadata.")] = None,
    description: Annotated[str | None, typer.Option(help="Short description; default names model and classes.")] = None,
    check_images: Annotated[int, typer.Option(help="Validation images the export is checked on, at most.")] = 500,
    json_output: JsonOption = False,
) -> None:
    """Export a run to ONNX, Core ML or TorchScript, check it against the original and write FILE.card.json beside it.

    Exits with status 1 when the file was written but a check failed (the card says which).
    """
    from cnnkit.export import export as run_export

    result = run_export(
        run,
        format,
        out=out,
        int8=int8,
        raw_input=raw_input,
        author=author,
        license=license,
        description=description,
        check_images=check_images,
    )
    if json_output:
        print_json(result.to_dict())
    else:
        for line in summary_lines(result):
            console.print(line, highlight=False)
    if not result.passed:
        fail(f"{result.path} was written but failed its checks; see {result.card_path}", code=1)


def summary_lines(result: ExportResult) -> list[str]:
    """What was written and what the checks measured, one fact per line."""
    card, checks = result.card, result.card["checks"]
    validation = card["validation"]
    lines = [f"[bold green]exported[/] {result.path} ({card['file_size_bytes'] / 1e6:.1f} MB)"]
    if "top1_agreement" in checks:
        lines.append(
            f"checked on {validation['images']} validation images against PyTorch fp32: "
            f"top-1 agreement {checks['top1_agreement']:.2%}, max probability difference "
            f"{checks['max_abs_prob_diff']:.1e}"
        )
        lines.append(
            f"validation accuracy {validation['accuracy']:.2%} (PyTorch fp32 {validation['pytorch_fp32_accuracy']:.2%})"
        )
    if "size_ratio" in checks:
        latency = checks["latency_ms_batch1"]
        lines.append(
            f"int8: {checks['size_ratio']:.1%} of the fp32 size, "
            f"accuracy {checks['accuracy_change_points']:+.2f} points vs fp32, "
            f"batch-1 latency {latency['int8']:.1f} ms vs {latency['fp32']:.1f} ms fp32"
        )
    if "spec" in checks:
        failed = [name for name, ok in checks["spec"].items() if not ok]
        lines.append(f"Core ML spec checked: {', '.join(checks['spec'])}" + (f"; FAILED: {failed}" if failed else ""))
    lines += [f"[yellow]note:[/] {note}" for note in card["notes"]]
    lines.append(f"card: {result.card_path}")
    return lines
