"""``cnnkit report`` and the headline tables ``cnnkit evaluate`` prints under its per-class table.

Only the command's options and printing live here; the work is :mod:`cnnkit.evaluate.report`.
Heavy imports stay inside the functions so that ``cnnkit --help`` stays fast.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnkit.cli.output import console

if TYPE_CHECKING:
    from cnnkit.evaluate.analysis import Analysis


def print_headline(analysis: Analysis) -> None:
    """The numbers to read first (accuracy, macro F1, top-k, ECE) and the most confused class pairs."""
    from rich.table import Table

    h = analysis.headline()
    table = Table(title="Headline")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{h['accuracy']:.2%}")
    table.add_row("macro F1", f"{h['macro_f1']:.3f}")
    table.add_row(f"top-{h['top_k']} accuracy", f"{h['top_k_accuracy']:.2%}")
    table.add_row("expected calibration error", f"{h['expected_calibration_error']:.3f}")
    if h["temperature"] is not None:
        table.add_row(
            f"ECE after temperature {h['temperature']:.3f}", f"{h['calibrated_expected_calibration_error']:.3f}"
        )
    console.print(table)
    pairs = analysis.interpretation.confused_pairs[:5]
    if pairs:
        confused = Table(title="Most confused classes")
        for column in ("true class", "predicted as", "images", "share of true class"):
            confused.add_column(column, justify="right" if column in ("images", "share of true class") else "left")
        for pair in pairs:
            confused.add_row(pair.true_label, pair.predicted_label, str(pair.count), f"{pair.share:.1%}")
        console.print(confused)


def report(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'cnnkit train'.")],
    split: Annotated[str | None, typer.Option(help="train, val or test; default test if present, else val.")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default web browser.")] = False,
) -> None:
    """Write report.html into the run: one self-contained page with metrics, data, mistakes and a model card."""
    from cnnkit.evaluate.report import build_report

    path = build_report(run, split=split)
    console.print(f"report: [bold]{path}[/]")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
