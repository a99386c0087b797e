"""``cnnkit tune``: hyperparameter search on the validation split. Training options given here are
fixed for every trial; the search space varies the others (see :mod:`cnnkit.tune.space`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit.cli.output import JsonOption, console, print_json
from cnnkit.cli.train import training_options


def _parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY

    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, keyword, default=default, annotation=annotation)

    return [
        inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[
            str | None, typer.Argument(help="A folder of class sub-folders, or a built-in dataset name.",
                                       show_default=False)]),
        option("trials", Annotated[int, typer.Option(help="Finished trials the study should hold.")], 30),
        option("timeout", Annotated[float | None, typer.Option(
            help="Minutes after which no new trial starts.", show_default=False)], None),
        option("space", Annotated[Path | None, typer.Option(
            help="A YAML file that narrows or widens the default search space.", show_default=False)], None),
        option("study", Annotated[Path | None, typer.Option(
            help="The study folder (continued if it exists); default studies/<data>-<model>.", show_default=False)],
            None),
        option("method", Annotated[str, typer.Option(
            "--sampler", help="How trials are drawn: tpe, random or grid (the training option of this name is "
            "set with --config).")], "tpe"),
        option("evaluate_best", Annotated[bool, typer.Option(
            "--evaluate-best", help="Then train the best configuration on all splits and report its test accuracy.",
        )], False),
        option("config", Annotated[Path | None, typer.Option(
            help="A YAML file of training options every trial starts from.", show_default=False)], None),
        option("json_output", JsonOption, False),
        *training_options(skip=("data", "out", "sampler")),
    ]  # fmt: skip


def tune(**options: Any) -> None:
    """Search training options for the best validation accuracy; the test split is never read."""
    from cnnkit.tune.search import tune as run_search

    search = {name: options.pop(name) for name in ("trials", "space", "study", "method", "evaluate_best")}
    timeout, json_output = options.pop("timeout"), options.pop("json_output")
    data, config = options.pop("data"), options.pop("config")
    given = {name: value for name, value in options.items() if value is not None}
    result = run_search(
        data, config, timeout=None if timeout is None else timeout * 60, progress=not json_output, **search, **given
    )
    if json_output:
        print_json(result.to_dict())
        return
    _print_trials(result.trials)
    if result.best is None:
        console.print(f"no trial finished; see {result.study_dir}")
        return
    best = result.best
    console.print(f"best: trial {best['number']}, validation accuracy {best['val_accuracy']:.2%}")
    console.print(f"configuration: {result.best_config}  (cnnkit train --config {result.best_config})")
    console.print(f"run: {best['run']}    page: {result.files['page']}")
    if result.evaluated is not None:
        evaluated = result.evaluated
        console.print(f"retrained on all splits: test accuracy {evaluated['test_accuracy']:.2%} ({evaluated['run']})")


def _print_trials(trials: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from cnnkit.tune.report import format_params

    table = Table(title="trials")
    for column in ("trial", "state", "validation", "seconds"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("options drawn", overflow="fold")
    for trial in trials:
        accuracy = "" if trial["val_accuracy"] is None else f"{trial['val_accuracy']:.2%}"
        seconds = f"{trial['seconds'] or 0:.1f}"
        table.add_row(str(trial["number"]), trial["state"], accuracy, seconds, format_params(trial["params"]))
    console.print(table)


tune.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
tune.__annotations__ = {p.name: p.annotation for p in tune.__signature__.parameters.values()}  # type: ignore
