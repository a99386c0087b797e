"""``cnnkit check DATA``: dataset health before training (the work is :mod:`cnnkit.check`).

Heavy imports stay inside the function so that ``cnnkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnkit.cli.output import JsonOption, console, print_json

if TYPE_CHECKING:
    from cnnkit.check import CheckFindings

SHOWN_ROWS = 8


def _summary_table(findings: CheckFindings):
    from rich.table import Table

    inventory = findings.inventory
    counts = ", ".join(f"{split} {sum(per_class.values())}" for split, per_class in inventory.counts.items())
    kinds = {kind: sum(g.kind == kind for g in findings.duplicates) for kind in ("exact", "near", "flip")}
    table = Table(title=f"cnnkit check {findings.root} ({findings.layout}, {len(findings.classes)} classes)")
    table.add_column("check")
    table.add_column("found", justify="right")
    table.add_column("detail", overflow="fold")
    table.add_row("images", str(inventory.total), counts)
    table.add_row("unreadable / oversized", f"{len(inventory.unreadable)} / {len(inventory.oversized)}",
                  "training skips unreadable files" if inventory.unreadable else "")  # fmt: skip
    table.add_row("class imbalance", f"{inventory.imbalance.ratio:.2f}x", inventory.imbalance.advice or "")
    table.add_row("duplicate groups", str(len(findings.duplicates)), ", ".join(f"{n} {k}" for k, n in kinds.items()))
    table.add_row("conflicting labels", str(len(findings.conflicting_labels)), "the same picture in two classes")
    table.add_row("shared across splits", str(len(findings.leaks)), "evaluation would score training pictures")
    table.add_row("label-issue candidates", str(len(findings.label_issues)), "out-of-fold predictions disagree")
    table.add_row("outliers", str(len(findings.outliers)), "far from every class, near-blank or very dark")
    return table


def _print_details(findings: CheckFindings) -> None:
    """The most serious duplicate groups and the top label-issue candidates, a few lines each."""
    serious = [g for g in findings.duplicates if g.conflicting_labels or g.crosses_splits][:SHOWN_ROWS]
    for group in serious:
        members = ", ".join(f"{image.label}/{image.split}:{Path(image.path).name}" for image in group.images)
        console.print(f"[bold red]{group.kind} {group.scope}[/]: {members}", highlight=False, soft_wrap=True)
    for issue in findings.label_issues[:SHOWN_ROWS]:
        console.print(
            f"label #{issue.rank}: {issue.image.path} is {issue.image.label}, looks {issue.suggested} "
            f"({issue.confidence:.0%})",
            highlight=False,
            soft_wrap=True,
        )


def check(
    data: Annotated[str, typer.Argument(help="A folder of class sub-folders (flat, or train/val/test folders).")],
    model: Annotated[
        str, typer.Option(help="Pretrained model whose embeddings compare images; see 'cnnkit models'.")
    ] = "efficientnet_lite0",
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page with thumbnails to this file.")
    ] = None,
    similarity: Annotated[
        float, typer.Option(help="Embedding cosine near copies need (at the loosest hash match); higher: fewer.")
    ] = 0.92,
    val_split: Annotated[float, typer.Option(help="Validation fraction when the data has no val folder.")] = 0.15,
    test_split: Annotated[float, typer.Option(help="Test fraction for a flat folder.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the label check's folds.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    json_output: JsonOption = False,
) -> None:
    """Dataset health before training: counts, sizes, duplicates and leaks, likely label mistakes, outliers."""
    from cnnkit.check import check_dataset, write_html

    findings = check_dataset(
        data, model, val_split=val_split, test_split=test_split, seed=seed, similarity=similarity, device=device,
        progress=not json_output,
    )  # fmt: skip
    page = write_html(findings, html) if html is not None else None
    if json_output:
        print_json({**findings.to_dict(), "html": str(page) if page else None})
        return
    console.print(_summary_table(findings))
    _print_details(findings)
    console.print(f"page: [bold]{page}[/]" if page else "all findings: add --json, or --html FILE for thumbnails")
