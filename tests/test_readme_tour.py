"""The README's command-line tour, run as written on a small dataset: every command works, prints no
traceback and no other library's progress bar, and its output fits 80 columns when piped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnkit.cli.main import main
from tests.conftest import write_shapes_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
SHORT = ["--epochs", "2", "--fine-tune-epochs", "1", "--image-size", "96"]  # the tour's training, cut short
FOREIGN_PROGRESS = re.compile(r"\d+%\|| it/s|s/it\]|Running MIL|Converting PyTorch")


def tour_commands() -> list[list[str]]:
    """The ``cnnkit ...`` lines of the README's first bash block after 'A tour of the command line'."""
    text = README.read_text()
    block = text.split("## A tour of the command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].split() for line in block.splitlines()]
    return [words for words in lines if words and words[0] == "cnnkit"]


def test_the_tour_is_in_the_readme() -> None:
    commands = [words[1] for words in tour_commands()]
    assert {"models", "summary", "train", "evaluate", "predict", "report", "explain", "visualize", "export"} <= set(
        commands
    )


@pytest.mark.slow
def test_the_readme_tour_runs_cleanly_at_80_columns(tmp_path: Path, monkeypatch, capfd) -> None:
    """In one process (each command would spend about 9 s importing torch otherwise); ``capfd`` also
    catches what other libraries write straight to the file descriptors."""
    data = write_shapes_dataset(tmp_path / "photos", per_class=12)
    image = next((data / "disc").iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    for words in tour_commands():
        args = [str(image) if word == "cat.jpg" else "disc" if word == "tabby" else word for word in words[1:]]
        if args[0] == "train":
            args += SHORT
        monkeypatch.setattr("sys.argv", ["cnnkit", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capfd.readouterr()
        shown = " ".join(words)
        assert exit_info.value.code in (0, None), f"{shown}: {err[-2000:]}"
        for stream in (out, err):
            assert "Traceback" not in stream and not FOREIGN_PROGRESS.search(stream), f"{shown}: {stream[-2000:]}"
        wide = [line for line in out.splitlines() if len(line) > 80]
        assert not wide, f"{shown} printed lines over 80 columns: {wide[:3]}"
