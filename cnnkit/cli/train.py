"""``cnnkit train``: its options are built from :class:`cnnkit.config.TrainConfig`, one per field.

Every option defaults to "not given" so that a ``--config`` file's values stand unless a flag
overrides them; the help shows each field's real default. The folder is claimed before torch is
imported, so a second training into the same ``--out`` stops within a second.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit.cli.output import JsonOption, console, fail, print_json
from cnnkit.config import base_type, flag, option_specs
from cnnkit.errors import CnnkitError


def _option(name: str, annotation: Any, default: Any, help: str) -> inspect.Parameter:
    kind, _ = base_type(annotation)
    shown = default.value if hasattr(default, "value") else default
    text = f"{help} [default: {'per model' if shown is None else shown}]"
    declarations = [f"{flag(name)}/--no-{flag(name)[2:]}"] if kind is bool else [flag(name)]
    info = typer.Option(*declarations, help=text, show_default=False)
    annotation = Annotated[kind | None, info]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _parameters() -> list[inspect.Parameter]:
    specs = option_specs()
    data_help = next(help for name, _, _, help in specs if name == "data")
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(
            "data", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
            annotation=Annotated[str | None, typer.Argument(help=data_help, show_default=False)],
        ),
        inspect.Parameter("config", keyword, default=None, annotation=Annotated[Path | None, typer.Option(
            "--config", help="A YAML file of these options (a run's config.yaml repeats that run); flags override it.",
        )]),
        inspect.Parameter("resume", keyword, default=None, annotation=Annotated[Path | None, typer.Option(
            "--resume", help="Continue the run in this folder where it stopped; with --epochs N, train it longer.",
        )]),
        inspect.Parameter("json_output", keyword, default=False, annotation=JsonOption),
        *training_options(),
    ]  # fmt: skip


def training_options(skip: tuple[str, ...] = ("data",)) -> list[inspect.Parameter]:
    """One keyword parameter per training option but those in ``skip`` (also used by ``cnnkit tune``)."""
    return [_option(name, annotation, default, help) for name, annotation, default, help in option_specs()
            if name not in skip]  # fmt: skip


def train(**options: Any) -> None:
    """Train a classifier and write a run folder (weights, history, curves, metrics, a resumable checkpoint)."""
    from cnnkit.train.opening import open_run
    from cnnkit.train.ranks import is_main_process

    data, config, resume = options.pop("data"), options.pop("config"), options.pop("resume")
    json_output = options.pop("json_output")
    given = {name: value for name, value in options.items() if value is not None}
    opened = open_run(data, config, resume, given)  # claims the folder before torch loads

    from cnnkit.train.trainer import train_opened

    try:
        run = train_opened(opened, progress=not json_output)
    except KeyboardInterrupt:
        fail(interrupted(opened.run_dir), code=130)
    except CnnkitError as exc:
        raise CnnkitError(failed_later(opened.run_dir, exc)) from exc
    if not is_main_process():
        return  # rank 0 of a data-parallel run reports
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


def interrupted(run_dir: Path) -> str:
    """The one line Ctrl-C leaves: how to go on, or that there is nothing to go on from."""
    from cnnkit.run import CONFIG

    if (run_dir / CONFIG).is_file():
        return f"interrupted; resume with: cnnkit train --resume {run_dir}"
    return "interrupted before the first epoch ended; nothing was kept, train again"


def failed_later(run_dir: Path, exc: CnnkitError) -> str:
    """A file that could not be written after the first checkpoint (a full disk, say) keeps the run: say how
    to go on once the cause is fixed."""
    from cnnkit.run import CHECKPOINT

    if str(exc).startswith("cannot write") and (run_dir / CHECKPOINT).is_file():
        return f"{exc}; the last good checkpoint is kept: cnnkit train --resume {run_dir}"
    return str(exc)


train.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}  # type: ignore
