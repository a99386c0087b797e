"""``cnnkit tune``: the search space, trials that never see the test split, a study that survives a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import cnnkit
from cnnkit.cli.main import app
from cnnkit.config import TrainConfig
from cnnkit.errors import CnnkitError
from cnnkit.run import load_run
from cnnkit.tune.space import Param, SearchSpace, default_space, load_space
from cnnkit.tune.study import STUDY_FILE, STUDY_NAME, ReportToTrial
from tests.conftest import write_shapes_dataset
from tests.test_cli import run_main

runner = CliRunner()
TINY = {"model": "plain_cnn", "image_size": 32, "epochs": 3}  # a trial takes a second or two


def study_trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{(study_dir / STUDY_FILE).resolve()}"
    return optuna.load_study(study_name=STUDY_NAME, storage=storage).get_trials()


def test_a_space_file_narrows_widens_fixes_and_drops_options(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {low: 0.001, high: 0.1, log: true}\ncache_views: {low: 1, high: 4}\nhead: [mlp]\n"
                    "dropout: 0.3\naugment: null\n")  # fmt: skip
    space = load_space(path, default_space(pretrained=True), TrainConfig())
    by_name = {param.name: param for param in space.params}
    assert by_name["lr"] == Param("lr", 0.001, 0.1, log=True)
    assert by_name["cache_views"].integer and by_name["cache_views"].grid_values() == [1, 2, 4]
    assert by_name["head"].choices == ("mlp",)
    assert "augment" not in by_name and "dropout" not in by_name and dict(space.fixed) == {"dropout": 0.3}
    assert {"weight_decay", "unfreeze", "fine_tune_lr_factor"} <= set(by_name)  # the rest of the default stays


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: {low: 0.1, high: 0.01}", "option 'lr': a range is {low: A, high: B} with A < B"),
        ("lr: {low: 0, high: 0.1, log: true}", "a log range needs low > 0"),
        ("head: [linear, cnn]", "--head must be one of linear, mlp, not 'cnn'"),
        ("learning_rate: [0.1]", "unknown option 'learning_rate'"),
        ("seed: [0, 1]", "seed is the same for every trial"),
        ("- lr", "must be a mapping"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_file_and_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text + "\n")
    with pytest.raises(CnnkitError, match="search space file") as caught:
        load_space(path, default_space(pretrained=False), TrainConfig())
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_trial_is_pruned_when_the_pruner_says_so(tmp_path: Path) -> None:
    class Trial:
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) == 2

    trial = Trial()
    data = write_shapes_dataset(tmp_path / "shapes", per_class=8)
    with pytest.raises(optuna.TrialPruned), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cnnkit.train(data, **TINY, progress=False, out=tmp_path / "run", callbacks=[ReportToTrial(trial)])
    assert [step for _, step in trial.reports] == [1, 2] and all(0 <= value <= 1 for value, _ in trial.reports)


@pytest.fixture(scope="module")
def split_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test folders whose test images are all unreadable: a trial that read them would fail."""
    root = write_shapes_dataset(tmp_path_factory.mktemp("tune") / "shapes", per_class=20, layout="splits")
    for image in (root / "test").rglob("*.png"):
        image.write_bytes(b"not a picture")
    return root


@pytest.fixture(scope="module")
def searched(split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> cnnkit.tune.search.TuneResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cnnkit.tune(split_data, **TINY, trials=3, study=tmp_path_factory.mktemp("study"), progress=False)


def test_trials_never_read_the_test_split(searched) -> None:
    assert [trial["state"] for trial in searched.trials] == ["complete"] * 3
    run = load_run(searched.best["run"])
    assert "test_accuracy" not in run.metrics and "test" not in run.facts.num_images
    assert set(searched.best["params"]) == {"lr", "weight_decay", "dropout", "batch_size", "augment"}  # epochs given


def test_the_best_configuration_trains_again_to_the_same_validation_accuracy(
    searched, split_data: Path, tmp_path: Path
) -> None:
    config = TrainConfig.from_file(searched.best_config)
    assert config.out is None and config.epochs == TINY["epochs"] and config.data == str(split_data)
    assert {name: getattr(config, name) for name in searched.best["params"]} == searched.best["params"]
    readable = tmp_path / "readable"  # the same train and val images, without the unreadable test folder
    for split in ("train", "val"):
        shutil.copytree(split_data / split, readable / split)
    result = runner.invoke(app, ["train", str(readable), "--config", str(searched.best_config), "--out",
                                 str(tmp_path / "again"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_accuracy"] == pytest.approx(searched.best["val_accuracy"])


def test_the_study_folder_holds_the_table_the_plots_the_page_and_only_the_best_run(searched) -> None:
    study = searched.study_dir
    assert (study / "trials.csv").read_text().count("\n") == 4
    for name in ("optimization_history.png", "param_importances.png", "slices.png"):
        assert (study / name).stat().st_size > 5000
    page = (study / "study.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and page.count("<tr") == 4
    assert [p.name for p in (study / "trials").iterdir()] == [Path(searched.best["run"]).name]


def test_a_grid_search_runs_each_point_once(split_data: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.001, 0.003]\nhead: [linear, mlp]\nweight_decay: null\ndropout: null\nbatch_size: null\n"
                     "augment: null\n")  # fmt: skip
    args = ["tune", str(split_data), "--model", "plain_cnn", "--image-size", "32", "--epochs", "2", "--sampler",
            "grid", "--space", str(space), "--trials", "10", "--study", str(tmp_path / "study"), "--json"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    drawn = [tuple(sorted(trial["params"].items())) for trial in json.loads(result.stdout)["trials"]]
    assert len(drawn) == 4 and len(set(drawn)) == 4


def test_a_study_killed_mid_trial_continues_without_repeating_finished_trials(tmp_path: Path) -> None:
    data = write_shapes_dataset(tmp_path / "shapes", per_class=12)
    study = tmp_path / "study"
    command = [sys.executable, "-m", "cnnkit.cli.main", "tune", str(data), "--model", "plain_cnn", "--image-size",
               "32", "--epochs", "3", "--trials", "4", "--study", str(study), "--json"]  # fmt: skip
    env = {**os.environ, "CNNKIT_CRASH_AT": "epoch:5", "OMP_NUM_THREADS": "1"}  # epoch 2 of the second trial
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = study_trials(study)
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    env.pop("CNNKIT_CRASH_AT")
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = study_trials(study)
    assert [t.state.name for t in after] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert after[0].params == before[0].params and after[0].value == before[0].value
    assert after[2].params == before[1].params and after[2].user_attrs["rerun_of"] == 1  # the killed one, again
    finished = [tuple(sorted(t.params.items())) for t in after if t.state.name == "COMPLETE"]
    assert len(set(finished)) == 4
    assert len(json.loads(resumed.stdout)["trials"]) == 5


def test_tune_options_and_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    help_text = runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "120"}).output
    for option in ("--trials", "--timeout", "--space", "--study", "--sampler", "--evaluate-best", "--lr"):
        assert option in help_text
    for args, message in [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--space", str(tmp_path / "none.yaml")], "search space file"),
        (["--sampler", "bayes"], "--sampler must be one of tpe, random, grid"),
    ]:
        code, _, err = run_main(monkeypatch, capsys, "tune", str(tmp_path), "--model", "plain_cnn", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_default_spaces_are_valid_training_options() -> None:
    for pretrained in (True, False):
        for optimizer in ("adam", "sgd"):
            space = default_space(pretrained, optimizer)
            for param in space.params:
                for value in param.grid_values():
                    TrainConfig().with_overrides(**{param.name: value, "optimizer": optimizer})
    assert isinstance(default_space(True), SearchSpace)


def test_the_learning_rate_range_follows_the_optimizer() -> None:
    """SGD's useful learning rates are about 100x Adam's (the CIFAR-10 recipe: 0.4 against Adam's 4e-3)."""
    adam, sgd = (next(p for p in default_space(False, name).params if p.name == "lr") for name in ("adam", "sgd"))
    assert adam.low <= 4e-3 <= adam.high and sgd.low <= 0.4 <= sgd.high
    assert sgd.low == pytest.approx(100 * adam.low) and sgd.high == pytest.approx(100 * adam.high)


def test_evaluate_best_trains_the_best_configuration_on_all_splits_once(tmp_path: Path) -> None:
    data = write_shapes_dataset(tmp_path / "shapes", per_class=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = cnnkit.tune(data, **TINY, trials=2, study=tmp_path / "study", evaluate_best=True, progress=False)
        again = cnnkit.tune(data, **TINY, trials=2, study=tmp_path / "study", evaluate_best=True, progress=False)
    run = load_run(first.evaluated["run"])
    assert run.metrics["test_accuracy"] == first.evaluated["test_accuracy"] and run.metrics["num_test"] > 0
    assert run.config.lr == first.best["params"]["lr"] and "test" in run.facts.num_images
    assert again.evaluated == first.evaluated and len(again.trials) == 2  # nothing trained twice
