"""``cnnkit models``: the registry as a table, from :mod:`cnnkit.cli.model_list` (no torch needed)."""

from __future__ import annotations

from typing import Any

from cnnkit.cli.model_list import MODELS
from cnnkit.cli.output import JsonOption, console, print_json

TITLE = "Parameters and GMACs at 1,000 classes and the default input size; top-1: ImageNet accuracy."
NARROWEST_DESCRIPTION = 30  # below this the descriptions go under the table instead of beside it


def models(json_output: JsonOption = False) -> None:
    """List the model registry: input size, parameters, multiply-adds, pretrained weights."""
    if json_output:
        print_json(MODELS)
        return
    console.print(TITLE, highlight=False)
    for renderable in model_tables(MODELS, console.width):
        console.print(renderable)


def _numbers(row: dict[str, Any]) -> list[str]:
    top1 = f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "-"
    return [row["name"], str(row["input_size"]), f"{row['params']:,}", f"{row['gmacs']:.2f}", row["pretrained"], top1]


def model_tables(rows: list[dict[str, Any]], width: int) -> list[Any]:
    """One table with a description column where it fits in ``width``; else the descriptions below it."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "input", "params", "GMACs", "pretrained", "top-1"):
        justify = "right" if column in ("params", "GMACs", "input") else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    numbers = [_numbers(row) for row in rows]
    used = sum(max(len(cells[i]) for cells in [table_headers(table), *numbers]) + 3 for i in range(6))
    beside = width - used >= NARROWEST_DESCRIPTION
    if beside:
        table.add_column("description", overflow="fold", ratio=1)
    for row, cells in zip(rows, numbers, strict=True):
        table.add_row(*cells, *([row["description"]] if beside else []))
    if beside:
        return [table]
    descriptions = Table.grid(padding=(0, 2))
    descriptions.add_column(no_wrap=True)
    descriptions.add_column(overflow="fold")
    for row in rows:
        descriptions.add_row(row["name"], row["description"])
    return [table, descriptions]


def table_headers(table: Any) -> list[str]:
    return [str(column.header) for column in table.columns]
