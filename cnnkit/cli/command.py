"""How every ``cnnkit`` command parses, shows its help and ends: the Click command class they share.

Help is Click's plain layout (names never cut at 80 columns, nothing but text when piped):
arguments are shown as ``DATA`` and ``[DATA]``, never ``{data}``, and flags carry no ``<bool>``.
A URL where a path belongs is refused before any work, and Ctrl-C ends with one line and status 130.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

from cnnkit.errors import CnnkitError, is_url, url_message

FREE_TEXT = frozenset({"author", "license", "description", "class_name", "json_output"})  # may hold any text


def argument_name(param: Any) -> str:
    """``DATA`` for an argument named ``data``; an explicit metavar such as ``[RUN] IMG`` stays."""
    return param.metavar or param.name.upper()


def _shown_name(param: Any) -> str:
    if param.param_type_name == "argument":
        return argument_name(param)
    return next((opt for opt in param.opts if opt.startswith("--")), param.name)


def check_no_urls(params: list[Any], values: dict[str, Any]) -> None:
    """A URL given as a file or folder is one clear error, not a path with its slashes merged."""
    for param in params:
        if param.name in FREE_TEXT:
            continue
        value = values.get(param.name)
        for item in value if isinstance(value, list | tuple) else [value]:
            if is_url(item):
                raise CnnkitError(url_message(_shown_name(param), item))


class CnnkitCommand(TyperCommand):
    """A Typer command with readable plain help, the URL check and a one-line Ctrl-C."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = argument_name(param)
            if not param.required and not name.startswith("["):
                name = f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((argument_name(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        from cnnkit.cli.output import fail

        check_no_urls(self.get_params(ctx), ctx.params)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted; files already written are complete (each is written atomically)", code=130)
