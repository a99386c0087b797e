"""A study's results as files: ``trials.csv``, three plots as PNG and ``study.html`` that shows them all.

The plots are Optuna's matplotlib ones: the optimization history (each trial's validation accuracy
and the best so far), the parameter importances (fANOVA, from two finished trials on) and a slice
plot (accuracy against each parameter). The page is self-contained, like the run report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import warnings
from pathlib import Path
from typing import Any

import optuna

from cnnkit.fileio import save_figure, write_text
from cnnkit.tune.space import SearchSpace

TRIALS_CSV = "trials.csv"
STUDY_PAGE = "study.html"
PLOTS = {"history": "optimization_history.png", "importances": "param_importances.png", "slices": "slices.png"}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One plain row per trial: number, state, validation accuracy, seconds, parameters."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append({
            "number": trial.number, "state": trial.state.name.lower(), "val_accuracy": trial.value,
            "seconds": trial.user_attrs.get("seconds"), "best_epoch": trial.user_attrs.get("best_epoch"),
            "pruned_at": trial.last_step if trial.state == optuna.trial.TrialState.PRUNED else None,
            "params": dict(trial.params),
        })  # fmt: skip
    return rows


def format_params(params: dict[str, Any]) -> str:
    """``lr=0.00125 head=mlp``: three significant digits, short enough for a log line."""
    return " ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in params.items())  # fmt: skip


def write_report(study: optuna.Study, study_dir: Path, space: SearchSpace) -> dict[str, Path]:
    """Write the trial table, the plots that the finished trials allow, and the page; return their paths."""
    rows = trial_rows(study)
    files = {"trials": study_dir / TRIALS_CSV}
    _write_csv(files["trials"], rows, space.names())
    files.update(_plots(study, study_dir))
    files["page"] = study_dir / STUDY_PAGE
    write_text(files["page"], _page(rows, space, {name: path for name, path in files.items() if name in PLOTS}))
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "val_accuracy", "seconds", "best_epoch", "pruned_at", *names])
    for row in rows:
        fixed = [row[key] for key in ("number", "state", "val_accuracy", "seconds", "best_epoch", "pruned_at")]
        writer.writerow([*fixed, *(row["params"].get(name) for name in names)])
    write_text(path, buffer.getvalue())


def _plots(study: optuna.Study, study_dir: Path) -> dict[str, Path]:
    from optuna.visualization import matplotlib as plots

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    makers = {"history": plots.plot_optimization_history, "slices": plots.plot_slice}
    if len(complete) >= 2:
        makers["importances"] = plots.plot_param_importances
    written = {}
    for name, make in makers.items():
        if not complete:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = make(study)
            except (ValueError, RuntimeError):  # e.g. importances when no parameter varied
                continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        save_figure(figure, study_dir / PLOTS[name])
        written[name] = study_dir / PLOTS[name]
    return written


def _page(rows: list[dict[str, Any]], space: SearchSpace, plots: dict[str, Path]) -> str:
    names = space.names()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", "state", "validation", "seconds", *names])
    best = max((r["val_accuracy"] for r in rows if r["val_accuracy"] is not None), default=None)
    body = []
    for row in rows:
        accuracy = "" if row["val_accuracy"] is None else f"{row['val_accuracy']:.2%}"
        style = ' class="best"' if best is not None and row["val_accuracy"] == best else ""
        params = [row["params"].get(name, "") for name in names]
        cells = [row["number"], row["state"], accuracy, row["seconds"] or "", *params]
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    images = "".join(
        f'<h2>{html.escape(name)}</h2><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}">'
        for name, path in plots.items()
    )
    searched = "".join(f"<li>{html.escape(p.name)}: {html.escape(p.describe())}</li>" for p in space.params)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cnnkit tune</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}tr.best{background:#e6f4ea}img{max-width:100%}"
        f"</style></head><body><h1>Hyperparameter search</h1><p>Searched:</p><ul>{searched}</ul>"
        f"<table><tr>{head}</tr>{''.join(body)}</table>{images}</body></html>"
    )
