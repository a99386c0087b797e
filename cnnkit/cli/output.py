"""Terminal output shared by the commands: Rich tables to stdout, messages to stderr, JSON for scripts."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Annotated, Any

import typer
from rich.console import Console

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout and nothing else.")]

console = Console()
errors = Console(stderr=True)


def print_json(data: Any) -> None:
    """One JSON document on stdout and nothing else, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 2) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def show_warnings_as_lines() -> None:
    """Print each warning as one yellow line on stderr instead of Python's two-line format."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        errors.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    warnings.showwarning = show
    noisy_messages = (
        r".*LeafSpec.*",
        r".*does not have many workers.*",
        r".*torch.jit.*",
        r".*TracerWarning.*",
        r"The image decoding and encoding capabilities of TorchVision are deprecated.*",
    )
    for noisy in noisy_messages:
        warnings.filterwarnings("ignore", message=noisy)
