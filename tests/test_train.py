"""Training runs: the run folder, repeatability, best-across-stages, atomic files."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch

import cnnkit
from cnnkit.data import load_dataset
from cnnkit.errors import CnnkitError
from cnnkit.fileio import atomic_path, write_json
from cnnkit.models import create_model
from cnnkit.run import HISTORY_COLUMNS, load_run
from cnnkit.train.module import ClassifierModule
from tests.conftest import shared_dataset


def _train_digits(out: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cnnkit.train("digits", model="lenet5", progress=False, out=out, **kwargs)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory):
    return _train_digits(tmp_path_factory.mktemp("digits") / "run", epochs=4)


def test_run_folder_holds_everything(digits_run) -> None:
    for name in ("config.yaml", "classes.json", "model.safetensors", "history.csv", "curves.png", "metrics.json"):
        assert (digits_run.path / name).is_file(), name
    with open(digits_run.path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert len(rows) == 4 and {row["stage"] for row in rows} == {"train"}
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert digits_run.metrics["val_accuracy"] >= 0.9
    assert digits_run.metrics["test_accuracy"] >= 0.85
    assert not list(digits_run.path.glob(".*.tmp"))


def test_loaded_run_predicts_like_the_trained_model(digits_run) -> None:
    loaded = load_run(digits_run.path)
    assert loaded.classes == [str(d) for d in range(10)]
    images = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.load_model()(images), digits_run.model(images), atol=1e-5)
    evaluation = cnnkit.evaluate(digits_run.path)
    assert evaluation.split == "test"
    assert evaluation.accuracy == pytest.approx(digits_run.metrics["test_accuracy"], abs=0.02)
    assert (digits_run.path / "confusion_matrix.png").is_file()
    assert evaluation.confusion.sum() == len(evaluation.labels)


def test_same_seed_same_run(tmp_path: Path) -> None:
    first = _train_digits(tmp_path / "a", epochs=1, seed=7)
    second = _train_digits(tmp_path / "b", epochs=1, seed=7)
    assert first.history[0]["loss"] == pytest.approx(second.history[0]["loss"], rel=1e-6)
    assert first.history[0]["val_accuracy"] == second.history[0]["val_accuracy"]


def test_fine_tuning_never_leaves_a_worse_model(tmp_path: Path) -> None:
    """A wildly high fine-tuning rate wrecks the network; the head-stage weights must be kept."""
    dataset = load_dataset(shared_dataset("hymenoptera"))
    dataset.train = dataset.train.subset(list(range(0, len(dataset.train), 6)))
    dataset.val = dataset.val.subset(list(range(0, len(dataset.val), 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(
            dataset,
            model="efficientnet_lite0",
            epochs=2,
            fine_tune_epochs=1,
            fine_tune_lr_factor=5000.0,
            image_size=96,
            augment="none",
            progress=False,
            out=tmp_path / "run",
        )
    stages = [row["stage"] for row in run.history]
    assert stages == ["head", "head", "fine_tune"]
    best_head = max(row["val_accuracy"] for row in run.history if row["stage"] == "head")
    assert run.history[-1]["val_accuracy"] < best_head
    assert run.metrics["best_stage"] == "head"
    assert run.metrics["val_accuracy"] == best_head
    reloaded = cnnkit.evaluate(run.path, data=dataset, split="val", save=False)
    assert reloaded.accuracy == pytest.approx(best_head, abs=1e-6)


def test_existing_output_folder_is_never_overwritten(digits_run) -> None:
    with pytest.raises(CnnkitError, match="already holds a run"):
        _train_digits(digits_run.path, epochs=1)


@pytest.mark.parametrize(
    ("option", "value"),
    [("epochs", -1), ("batch_size", 0), ("lr", 0.0), ("sampler", "random"), ("class_weight", "balanced"),
     ("unfreeze", "top:x"), ("image_cache", "gpu"), ("head", "deep"), ("schedule", "cosine"),
     ("label_smoothing", 1.0), ("test_tta", "rotate"), ("augment", "mixup"),
     ("optimizer", "rmsprop")],
)  # fmt: skip
def test_bad_hyperparameters_are_one_line_errors(option: str, value, tmp_path: Path) -> None:
    with pytest.raises(CnnkitError, match=option.replace("_", "-")):
        _train_digits(tmp_path / "x", **{option: value})


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"accura')
        raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith('{\n  "accuracy": 0.9')
    assert list(tmp_path.iterdir()) == [target]
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(("name", "optimizer_class"), [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_the_optimizer_option_picks_the_optimizer_that_steps(name: str, optimizer_class: type) -> None:
    module = ClassifierModule(create_model("compact_resnet_s", num_classes=3), lr=0.1, optimizer=name)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is optimizer_class
    assert optimizer.defaults.get("nesterov", True) and optimizer.defaults.get("momentum", 0.9) == 0.9
