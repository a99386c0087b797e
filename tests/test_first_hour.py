"""Issue 14, the first hour: what a newcomer meets in the first commands (version, help, errors, progress)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnkit.cli.main import app
from tests.conftest import write_shapes_dataset
from tests.test_cli import run_main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "lightning", "timm", "onnx", "sklearn", "matplotlib")


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def cnnkit(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process: stdout and stderr are pipes, not a terminal."""
    command = [sys.executable, "-m", "cnnkit.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, env=child_env(**env), timeout=timeout)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("first-hour"), per_class=10, size=32)


# 1. --version, and a CLI that starts without torch


def test_version_prints_the_installed_version() -> None:
    result = cnnkit("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cnnkit {version('cnnkit')}"


def test_importing_the_cli_and_parsing_load_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cnnkit.cli.main import app\n"
        "for args in (['--help'], ['--version'], ['models'], ['models', '--json'], ['train', '--nonsense'],"
        " ['train', '--help']):\n"
        "    CliRunner().invoke(app, args)\n"
        f"print([name for name in {HEAVY!r} if name in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_models_listing_matches_the_registry() -> None:
    from cnnkit.cli.model_list import MODELS
    from cnnkit.models.catalog import describe_models

    assert describe_models() == MODELS, "the registry changed: run 'python -m cnnkit.cli.model_list', then ruff format"


def test_models_json_is_the_listing() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    rows = json.loads(result.stdout)
    lite0 = next(row for row in rows if row["name"] == "efficientnet_lite0")
    assert lite0["pretrained"] == "offline" and lite0["input_size"] == 224 and lite0["family"]


# 2. Help and tables at 80 columns, on a terminal or piped


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["check", "--help"], ["explain", "--help"]])
def test_help_has_no_type_noise_and_fits_80_columns(args: list[str]) -> None:
    for result in (cnnkit(*args, COLUMNS="80"), cnnkit(*args)):
        assert result.returncode == 0
        assert "<bool>" not in result.stdout
        assert not re.search(r"\{\w+\}", result.stdout), result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_train_help_shows_every_option_name_whole() -> None:
    from cnnkit.config import flag, option_specs

    shown = cnnkit("train", "--help", COLUMNS="80").stdout
    for name, *_ in option_specs():
        if name != "data":
            assert flag(name) in shown
    assert "--fine-tune-epochs" in shown and "--fine-tune-lr-factor" in shown
    assert "Usage: " in shown and "[DATA]" in shown


@pytest.mark.parametrize("columns", ["80", None])
def test_models_table_keeps_names_and_columns_at_80(columns: str | None) -> None:
    from cnnkit.cli.model_list import MODELS

    result = cnnkit("models", **({"COLUMNS": columns} if columns else {}))
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and max(len(line) for line in lines) <= 80
    for header in ("name", "input", "params", "GMACs", "pretrained", "top-1"):
        assert header in result.stdout
    for row in MODELS:
        assert re.search(rf"^ ?{row['name']} ", result.stdout, re.MULTILINE), row["name"]
        assert row["description"].split()[0] in result.stdout  # descriptions are stacked below, not dropped
    assert "…" not in result.stdout


def test_models_table_puts_descriptions_beside_when_wide() -> None:
    result = cnnkit("models", COLUMNS="160")
    assert "description" in result.stdout and "…" not in result.stdout


# 3. Errors that name the mistake


def test_train_on_a_file_says_it_wants_a_folder(monkeypatch, capsys, tiny_shapes: Path) -> None:
    image = next((tiny_shapes / "disc").iterdir())
    code, _, err = run_main(monkeypatch, capsys, "train", str(image), "--model", "lenet5")
    assert code == 2
    assert "is a file" in err and "folder of class folders" in err and "does not exist" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["train", "https://example.com/data.zip", "--model", "lenet5"],
        ["predict", "https://example.com/cat.jpg", "--model", "efficientnet_lite0"],
        ["evaluate", "https://example.com/run"],
        ["predict", "cat.jpg", "--run", "https://example.com/run"],
    ],
)
def test_a_url_is_not_taken_for_a_path(monkeypatch, capsys, args: list[str]) -> None:
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "https://example.com/" in err and "URLs are not downloaded" in err and "download it first" in err


def test_predict_on_a_file_of_a_run_names_the_run_folder(monkeypatch, capsys, plain_run) -> None:
    for name in ("model.safetensors", "history.csv"):
        code, _, err = run_main(monkeypatch, capsys, "predict", "x.png", "--run", str(plain_run.path / name))
        assert code == 2 and f"give the run folder {plain_run.path}" in err


def test_predict_on_a_text_file_is_one_line_naming_it(monkeypatch, capsys, tmp_path: Path, plain_run) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image\n")
    code, _, err = run_main(monkeypatch, capsys, "predict", str(notes), "--run", str(plain_run.path))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert str(notes) in err and "not a readable image" in err and "BytesIO" not in err


def test_ctrl_c_during_training_says_how_to_resume(tiny_shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cnnkit.cli.main", "train", str(tiny_shapes), "--model", "lenet5"]
    command += ["--epochs", "5000", "--patience", "5000", "--out", str(out)]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background parent may ignore it
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (out / "last.ckpt").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"error: interrupted; resume with: cnnkit train --resume {out}"
    assert "Traceback" not in err


# 4. Progress: epochs from 1, one start line, plain lines in a log, 80 columns


def test_training_output_counts_epochs_from_one_and_fits_80_columns(tiny_shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cnnkit(
        "train", str(tiny_shapes), "--model", "lenet5", "--epochs", "3", "--out", str(out),
        CNNKIT_PROGRESS_INTERVAL="0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("decoding train: ")  # with the interval at 0, a line per image
    assert re.search(r"^decoding train: 20/20 images, [\d.]+ images/s, ETA \d+:\d\d$", result.stderr, re.MULTILINE)
    found = next(line for line in lines if not line.startswith("decoding "))
    assert re.fullmatch(r"found 30 images in 3 classes \(train 20 / val 5 / test 5\), on cpu, at 28 px", found)
    epochs = [line for line in lines if re.match(r"epoch \d+/3  loss", line)]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert re.search(r"^epoch 1/3: 1/1 batches, [\d.]+ batches/s, ETA \d+:\d\d$", result.stderr, re.MULTILINE)
    assert "0/3" not in result.stderr and "Epoch 0" not in result.stderr
    assert max(len(line) for line in lines) <= 80
    best = json.loads((out / "metrics.json").read_text())["best_epoch"]
    assert f"(epoch {best}, stage train)" in result.stdout and 1 <= best <= 3


def test_a_bad_progress_interval_is_one_line_naming_the_variable(tiny_shapes: Path, tmp_path: Path) -> None:
    """Decoding reads the interval first now, so a bad value must still stop with one line, not a traceback."""
    result = cnnkit("train", str(tiny_shapes), "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path / "run"),
                    CNNKIT_PROGRESS_INTERVAL="soon")  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: CNNKIT_PROGRESS_INTERVAL must be a number of seconds, not 'soon'"
    ), result.stderr


def test_plain_progress_line_comes_every_interval() -> None:
    from rich.console import Console

    from cnnkit.progress import PlainProgress, tracked

    console = Console(file=open(os.devnull, "w"), width=80)  # noqa: SIM115
    ticker = PlainProgress("caching", 100, "batches", console, interval=0.0)
    assert re.fullmatch(r"caching: 50/100 batches, [\d.]+ batches/s, ETA \d+:\d\d", ticker.line(50, ticker.started + 2))
    assert list(tracked(range(5), 5, "step")) == [0, 1, 2, 3, 4]


def test_epoch_line_fits_80_columns_for_the_longest_stage() -> None:
    from cnnkit.train.progress import epoch_line

    row = {"epoch": 133, "stage": "fine_tune", "loss": 12.3456, "accuracy": 1.0, "val_loss": 10.5, "val_accuracy": 1.0}
    assert len(epoch_line({**row, "seconds": 1234.5}, 200)) <= 80


# 5. coremltools' progress bars stay out of cnnkit export


def test_coreml_export_prints_no_progress_bars(plain_run, tmp_path: Path) -> None:
    result = cnnkit("export", str(plain_run.path), "--format", "coreml", "--check-images", "8",
                    "--out", str(tmp_path / "m.mlpackage"), timeout=300)  # fmt: skip
    output = result.stdout + result.stderr
    assert "exported" in result.stdout
    assert "Running MIL" not in output and "it/s" not in output and "passes/s" not in output and "%|" not in output
