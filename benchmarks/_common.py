"""Shared helpers for benchmark scripts: dataset location, result tables and JSON output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DATASETS = Path(os.environ.get("CNNKIT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
RESULTS = Path(__file__).resolve().parent / "results"


def report(name: str, title: str, rows: list[dict[str, Any]], targets: dict[str, bool]) -> bool:
    """Print rows as a table plus the pass/fail of each target, write them as JSON; True if all pass."""
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    console = Console()
    console.print(table)
    for target, ok in targets.items():
        console.print(f"{'[green]PASS' if ok else '[red]FAIL'}[/] {target}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "targets": targets}, indent=2) + "\n")
    return all(targets.values())
