"""The command line: every command has --help, --json is pure JSON, bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnkit.cli.main import app, main
from tests.conftest import sklearn_image

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Call the real entry point, which turns CnnkitError into one line and exit status 2."""
    monkeypatch.setattr("sys.argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "predict", "models", "summary", "report", "explain", "visualize", "export"]
)
def test_every_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_summary_json_reports_the_notes_parameter_count() -> None:
    result = invoke("summary", "plain_cnn", "--num-classes", "20", "--image-size", "224", "--json")
    data = json.loads(result.stdout)
    assert data["total_params"] == 1_177_396
    assert data["layers"][0]["output_shape"] == [None, 224, 224, 32]


def test_summary_table_shows_totals() -> None:
    result = invoke("summary", "plain_cnn", "--num-classes", "20")
    assert "Total params: 1,177,396" in result.stdout


def test_pretrained_model_as_is_puts_daisy_first() -> None:
    result = invoke("predict", sklearn_image("flower.jpg"), "--model", "efficientnet_lite0", "--json")
    first = json.loads(result.stdout)[0]["predictions"]
    assert first[0]["label"] == "daisy"
    assert len(first) == 5 and first[0]["probability"] > first[1]["probability"]


def test_train_evaluate_predict_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = invoke("train", "digits", "--model", "lenet5", "--epochs", "2", "--out", str(out), "--json")
    summary = json.loads(trained.stdout)
    assert summary["run"] == str(out) and summary["val_accuracy"] > 0.5
    evaluated = json.loads(invoke("evaluate", str(out), "--json").stdout)
    assert evaluated["split"] == "test" and len(evaluated["confusion_matrix"]) == 10
    assert set(evaluated["per_class"]["3"]) == {"precision", "recall", "f1-score", "support"}
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28), 0).save(image)
    predicted = json.loads(invoke("predict", str(image), "--run", str(out), "--top-k", "3", "--json").stdout)
    assert len(predicted[0]["predictions"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "/no/such/folder"], "does not exist"),
        (["train", "digits", "--model", "resnet9000"], "unknown model"),
        (["evaluate", "/no/such/run"], "run folder"),
        (["predict", "x.jpg"], "exactly one of --run"),
        (["summary", "lenet5", "--image-size", "8"], "at least 12"),
    ],
)
def test_bad_input_is_one_line_and_status_2(monkeypatch, capsys, args: list[str], message: str) -> None:
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_predict_answers_every_readable_image_and_exits_1_for_the_others(monkeypatch, capsys, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "flower.jpg").write_bytes(Path(sklearn_image("flower.jpg")).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_main(
        monkeypatch, capsys, "predict", str(folder), "missing.jpg", "--model", "efficientnet_lite0", "--json"
    )
    answers = {Path(a["image"]).name: a for a in json.loads(out)}
    assert code == 1 and answers["flower.jpg"]["predictions"][0]["label"] == "daisy"
    assert (
        "does not exist" in answers["missing.jpg"]["error"] and "not a readable image" in answers["notes.txt"]["error"]
    )
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
