"""The run lifecycle: one typed configuration, runs that repeat, survive kill -9, refuse a second trainer, and
notice damaged weights."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from typer.main import get_command

import cnnkit
from cnnkit.cli.main import app
from cnnkit.config import Head, TrainConfig, flag, option_specs
from cnnkit.errors import CnnkitError
from cnnkit.fileio import sha256_file
from cnnkit.run import CHECKPOINT, LOCK, WEIGHTS, load_run, weights_intact
from tests.conftest import sklearn_image
from tests.test_cli import run_main

TINY = dict(model="lenet5", epochs=2, progress=False)  # digits: about a second an epoch on two cores


def _train(out: Path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cnnkit.train("digits", out=out, **{**TINY, **options})


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory):
    return _train(tmp_path_factory.mktemp("lifecycle") / "run")


# --- the configuration ----------------------------------------------------------------------------------------------


def test_every_option_is_a_train_flag_with_the_same_default_and_help() -> None:
    params = {param.name: param for param in get_command(app).commands["train"].params}
    for name, _, default, help in option_specs():
        if name == "data":
            assert params["data"].param_type_name == "argument"
            continue
        param = params[name]
        assert flag(name) in param.opts, name
        assert param.default is None  # so a --config file's value stands unless the flag is given
        shown = default.value if hasattr(default, "value") else default
        assert help in param.help and f"[default: {'per model' if shown is None else shown}]" in param.help


def test_a_config_file_is_typed_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "options.yaml"
    path.write_text("model: lenet5\nepochs: 3\nhead: mlp\nlr: 1\n")
    config = TrainConfig.from_file(path)
    assert config.head is Head.mlp and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.with_overrides(epochs=5).epochs == 5 and config.epochs == 3
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: three\n", "--epochs must be a whole number"),
        ("epochs: 0\n", r"--epochs must be in \[1, inf\]"),
        ("batch_size: 0\n", r"--batch-size must be in \[1, 65536\]"),
        ("colour: red\n", "unknown option 'colour'"),
        ("head: deep\n", "--head must be one of linear, mlp"),
        ("val_split: 0.6\ntest_split: 0.5\n", "their sum below 1"),
        ("device: gpu\n", "--device must be auto, cpu"),
        ("!!python/object/apply:os.system ['echo hi']\n", "is not valid YAML for cnnkit"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CnnkitError, match=message) as raised:
        TrainConfig.from_file(path)
    assert "\n" not in str(raised.value)


# --- the run folder -------------------------------------------------------------------------------------------------


def test_a_run_records_a_complete_typed_configuration(digits_run) -> None:
    loaded = load_run(digits_run.path)
    assert isinstance(loaded.config, TrainConfig) and loaded.config.model == "lenet5" and loaded.config.epochs == 2
    assert loaded.facts.device == "cpu" and loaded.facts.preprocessing.input_size == 28
    assert (
        loaded.facts.num_images == {"train": 1257, "val": 270, "test": 270} and len(loaded.facts.data_fingerprint) == 24
    )
    record = (digits_run.path / f"{WEIGHTS}.sha256").read_text().split()
    assert record == [sha256_file(digits_run.path / WEIGHTS), WEIGHTS]
    assert not (digits_run.path / LOCK).exists()
    raw = yaml.safe_load((digits_run.path / "config.yaml").read_text())
    assert set(TrainConfig().to_dict()) <= set(raw) and "resolved" in raw


def test_config_yaml_repeats_the_run_exactly(digits_run, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = cnnkit.train(config=digits_run.path / "config.yaml", out=tmp_path / "again", progress=False)
    assert again.metrics["val_accuracy"] == digits_run.metrics["val_accuracy"]
    assert [row["val_loss"] for row in again.history] == [row["val_loss"] for row in digits_run.history]


def test_tensorboard_logger_writes_event_files(tmp_path: Path) -> None:
    run = _train(tmp_path / "tb", epochs=1, logger="tensorboard")
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_second_training_into_a_folder_in_use_stops(digits_run, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / LOCK).write_text(f'{{"pid": {os.getpid()}, "host": "{os.uname().nodename}", "start": null}}')
    with pytest.raises(CnnkitError, match="in use by another training"):
        _train(out)
    with pytest.raises(CnnkitError, match="already holds a run"):
        _train(digits_run.path)


def test_two_trainings_started_together_one_runs_the_other_exits_at_once(tmp_path: Path) -> None:
    out = tmp_path / "race"
    command = [sys.executable, "-m", "cnnkit.cli.main", "train", "digits", "--model", "lenet5", "--epochs", "1"]
    started = time.perf_counter()
    first, second = (
        subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    loser = None
    while loser is None:
        loser = next((p for p in (first, second) if p.poll() is not None), None)
        time.sleep(0.05)
    loser_seconds = time.perf_counter() - started
    winner = second if loser is first else first
    _, err = loser.communicate()
    winner.communicate(timeout=300)
    assert loser.returncode == 2 and "in use by another training" in err and len(err.strip().splitlines()) == 1
    assert loser_seconds < 10  # well under the time to load torch and train; the benchmark measures the real figure
    assert winner.returncode == 0 and load_run(out).metrics["val_accuracy"] > 0.3


def test_a_failure_before_the_first_epoch_leaves_no_folder_behind(tmp_path: Path) -> None:
    with pytest.raises(CnnkitError):
        _train(tmp_path / "tiny", image_size=8)  # LeNet-5 cannot shrink 8 px images five times
    assert not (tmp_path / "tiny").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_a_one_line_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(CnnkitError, match="--device cuda: no CUDA GPU"):
        _train(tmp_path / "gpu", device="cuda")
    assert not (tmp_path / "gpu").exists()


# --- damaged weights ------------------------------------------------------------------------------------------------


@pytest.fixture
def damaged_run(digits_run, tmp_path: Path) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(digits_run.path, copy)
    weights = copy / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert not weights_intact(copy)
    return copy


@pytest.mark.parametrize(
    "command",
    [["evaluate", "{run}"], ["predict", "{image}", "--run", "{run}"], ["export", "{run}", "--format", "onnx"],
     ["explain", "{run}", "{image}"], ["train", "--resume", "{run}", "--epochs", "3"]],
)  # fmt: skip
def test_a_flipped_byte_in_the_weights_is_a_one_line_error(damaged_run, monkeypatch, capsys, command) -> None:
    args = [part.format(run=damaged_run, image=sklearn_image("flower.jpg")) for part in command]
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


# --- kill -9 and resume ---------------------------------------------------------------------------------------------


def killed_at(crash: str, out: Path, data: str | Path = "digits", **options) -> bool:
    """Train in a forked child that SIGKILLs itself at the crash point; True if it died there."""
    pid = os.fork()
    if pid == 0:  # the child: one thread (OpenMP's pool does not survive fork), then train until the crash
        try:
            torch.set_num_threads(1)
            os.environ["CNNKIT_CRASH_AT"] = crash
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cnnkit.train(data, out=out, **{**TINY, **options})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def assert_complete_or_resumable(out: Path, **options) -> None:
    """Every run file is whole (a kill leaves at most a hidden temporary file); the folder then resumes, or, if it
    holds no configuration yet, takes a fresh start, and ends complete."""
    if (out / "config.yaml").exists():
        load_run(out) if (out / WEIGHTS).exists() else yaml.safe_load((out / "config.yaml").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not (out / "config.yaml").exists():
            _train(out, **options)
        elif not (out / "metrics.json").exists():
            cnnkit.train(resume=out, progress=False)
    run = load_run(out)
    assert weights_intact(out) and run.metrics["val_accuracy"] > 0.3
    assert [int(row["epoch"]) for row in run.history] == list(range(1, len(run.history) + 1))
    assert not list(out.glob(".*.tmp")) and not (out / LOCK).exists()


DIGITS_CRASHES = ["decoded:1", "epoch:1", "checkpointed:1", "epoch:2", "checkpointed:2", "finish:1"] + [
    f"write:{n}" for n in range(1, 13)
]


def test_a_run_killed_at_any_moment_is_complete_or_resumes(tmp_path: Path) -> None:
    died = []
    small = {"image_size": 16}  # 36 trainings: at 16 px each takes a third less time, and still learns digits
    for crash in DIGITS_CRASHES:
        out = tmp_path / crash.replace(":", "-")
        died += [crash] if killed_at(crash, out, **small) else []
        assert_complete_or_resumable(out, **small)
    assert len(died) >= 16, died


PRETRAINED_CRASHES = ["extract:1", "extract:3", "epoch:2", "checkpointed:3", "epoch:4"]


def test_a_pretrained_run_killed_in_caching_head_or_fine_tuning_resumes(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = dict(model="efficientnet_lite0", image_size=64, epochs=2, fine_tune_epochs=2, augment="standard",
                   cache_views=2)  # fmt: skip
    for crash in PRETRAINED_CRASHES:
        out = tmp_path / crash.replace(":", "-")
        monkeypatch.setenv("CNNKIT_CACHE", str(out.with_name(f"cache-{out.name}")))  # each kill extracts afresh
        assert killed_at(crash, out, data=shapes_dir, **options), crash
        assert_complete_or_resumable(out)
        assert [row["stage"] for row in load_run(out).history] == ["head", "head", "fine_tune", "fine_tune"]


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed child runs on one thread; compare like with like
    try:
        whole = _train(tmp_path / "whole", epochs=3)
        assert killed_at("checkpointed:2", tmp_path / "killed", epochs=3)
        assert (tmp_path / "killed" / CHECKPOINT).exists() and not (tmp_path / "killed" / "metrics.json").exists()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resumed = cnnkit.train(resume=tmp_path / "killed", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in whole.history]
    assert resumed.metrics["val_accuracy"] == whole.metrics["val_accuracy"]


def test_resume_extends_a_finished_run_and_refuses_other_changes(digits_run, tmp_path: Path) -> None:
    copy = tmp_path / "longer"
    shutil.copytree(digits_run.path, copy)
    with pytest.raises(CnnkitError, match="is complete"):
        cnnkit.train(resume=copy, progress=False)
    with pytest.raises(CnnkitError, match="cannot change --lr when resuming"):
        cnnkit.train(resume=copy, lr=0.1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        longer = cnnkit.train(resume=copy, epochs=3, progress=False)
    assert len(longer.history) == 3 and longer.history[:2] == digits_run.history
    assert load_run(copy).facts.epochs == 3


def test_resume_stretches_a_one_cycle_schedule_over_the_extended_stage(tmp_path: Path) -> None:
    """The checkpoint's cycle ends with the old length; stepping past it would raise in the added epoch."""
    run = _train(tmp_path / "cycle", schedule="one_cycle")
    before = list(run.history)  # the run reads its folder, which the resumed run extends
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        longer = cnnkit.train(resume=run.path, epochs=3, progress=False)
    assert len(longer.history) == 3 and load_run(run.path).facts.epochs == 3
    assert longer.history[:2] == before and longer.history[2]["val_accuracy"] > 0.5
