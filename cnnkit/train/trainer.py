"""``cnnkit.train``: one call from a dataset to a finished run folder.

From-scratch models train in one stage. Pretrained models train in two, as in the notes: a new
head on the frozen base, then fine-tuning at a tenth of the learning rate. The best weights by
validation accuracy across both stages are kept, so fine-tuning never leaves a worse model.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from cnnkit.data.datasets import TensorImageDataset, decode_images, load_dataset, warn_skipped
from cnnkit.data.folders import DatasetSplits
from cnnkit.data.transforms import eval_transform, resolve_augment, train_transform
from cnnkit.errors import CnnkitError
from cnnkit.evaluate.metrics import score
from cnnkit.evaluate.plots import plot_curves
from cnnkit.fileio import write_json, write_yaml
from cnnkit.inference import Predictor
from cnnkit.models.registry import create_model, get_model_info
from cnnkit.runtime import lightning_precision, pick_device, resolve_precision
from cnnkit.train.callbacks import KeepBestWeights
from cnnkit.train.module import ClassifierModule, freeze
from cnnkit.train.run import Run, new_run_dir

DEFAULT_EPOCHS = {"scratch": 20, "pretrained": 8}
DEFAULT_FINE_TUNE_EPOCHS = 3


def _quiet_lightning() -> None:
    """Lightning's banners and hints mean nothing to cnnkit users; keep warnings and errors."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*bf16-mixed.*")


def _fit(
    module: ClassifierModule,
    train_loader: DataLoader,
    val_loader: DataLoader,
    epochs: int,
    keep_best: KeepBestWeights,
    *,
    device: torch.device,
    precision: str,
    patience: int,
    progress: bool,
) -> None:
    if epochs <= 0:
        return
    callbacks: list[L.Callback] = [
        keep_best,
        L.pytorch.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience),
    ]
    if progress:
        callbacks.append(L.pytorch.callbacks.RichProgressBar(leave=True, console_kwargs={"stderr": True}))
    trainer = L.Trainer(
        accelerator="gpu" if device.type in ("cuda", "mps") else "cpu",
        devices=1,
        max_epochs=epochs,
        precision=lightning_precision(precision),
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    trainer.fit(module, train_loader, val_loader)


def train(
    data: str | Path | DatasetSplits,
    model: str = "plain_cnn",
    *,
    epochs: int | None = None,
    fine_tune_epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    fine_tune_lr: float | None = None,
    augment: str = "auto",
    pretrained: bool | None = None,
    dropout: float | None = None,
    weight_decay: float = 0.0,
    patience: int = 5,
    val_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
    precision: str = "auto",
    device: str = "auto",
    out: str | Path | None = None,
    progress: bool = True,
) -> Run:
    """Train ``model`` on ``data`` (a folder or a built-in dataset name) and return the run.

    ``pretrained`` defaults to True when the model has ImageNet weights available offline.
    ``epochs`` is the head stage for pretrained models and the only stage otherwise;
    ``fine_tune_epochs`` (default 3, 0 to skip) unfreezes the whole network at ``fine_tune_lr``
    (default ``lr / 10``). Writes the run folder described in :mod:`cnnkit.train.run`.
    """
    _quiet_lightning()
    started = time.perf_counter()
    info = get_model_info(model)
    pretrained = info.pretrained == "offline" if pretrained is None else pretrained
    for name, value in (("epochs", epochs), ("fine_tune_epochs", fine_tune_epochs), ("batch_size", batch_size)):
        if value is not None and value < (1 if name == "batch_size" else 0):
            raise CnnkitError(f"--{name.replace('_', '-')} must be a positive number, not {value}")
    if lr <= 0:
        raise CnnkitError(f"--lr must be positive, not {lr}")
    epochs = DEFAULT_EPOCHS["pretrained" if pretrained else "scratch"] if epochs is None else epochs
    fine_tune_epochs = (DEFAULT_FINE_TUNE_EPOCHS if pretrained else 0) if fine_tune_epochs is None else fine_tune_epochs
    fine_tune_lr = lr / 10 if fine_tune_lr is None else fine_tune_lr

    dataset = data if isinstance(data, DatasetSplits) else load_dataset(data, val_split, test_split, seed)
    L.seed_everything(seed, verbose=False)
    model_kwargs: dict[str, Any] = {} if dropout is None else {"dropout": dropout}
    network = create_model(model, len(dataset.classes), pretrained=pretrained, image_size=image_size, **model_kwargs)
    preprocessing = network.preprocessing
    augment = resolve_augment(augment, preprocessing)

    decode_started = time.perf_counter()
    train_images = decode_images(dataset.train, preprocessing, for_training=augment != "none", warn=False)
    val_images = decode_images(dataset.val, preprocessing, warn=False)
    warn_skipped(train_images.skipped + val_images.skipped)
    decode_seconds = time.perf_counter() - decode_started
    for split, decoded in (("train", train_images), ("val", val_images)):
        if len(decoded.labels) == 0:
            raise CnnkitError(f"no readable images in the {split} split of {dataset.name}")

    chosen_device = pick_device(device)
    precision = resolve_precision(precision, chosen_device)
    run_dir = new_run_dir(out, f"{dataset.name}-{model}")
    config = {
        "model": model,
        "model_kwargs": model_kwargs,
        "pretrained": pretrained,
        "preprocessing": preprocessing.to_dict(),
        "data": dataset.root,
        "dataset_layout": dataset.layout,
        "dataset_notes": dataset.notes,
        "val_split": val_split,
        "test_split": test_split,
        "seed": seed,
        "augment": augment,
        "epochs": epochs,
        "fine_tune_epochs": fine_tune_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "fine_tune_lr": fine_tune_lr,
        "weight_decay": weight_decay,
        "patience": patience,
        "precision": precision,
        "device": str(chosen_device),
        "channels_last": True,
        "frozen_batchnorm": pretrained,
        "skipped_files": train_images.skipped + val_images.skipped,
    }
    write_yaml(run_dir / "config.yaml", config)
    write_json(run_dir / "classes.json", dataset.classes)

    generator = torch.Generator().manual_seed(seed)
    train_transform_ = train_transform(preprocessing, augment) if augment != "none" else eval_transform(preprocessing)
    train_loader = DataLoader(
        TensorImageDataset(train_images, train_transform_), batch_size=batch_size, shuffle=True, generator=generator
    )
    val_loader = DataLoader(
        TensorImageDataset(val_images, eval_transform(preprocessing)), batch_size=max(64, batch_size)
    )

    network = network.to(memory_format=torch.channels_last)
    module = ClassifierModule(network, lr=lr, weight_decay=weight_decay, frozen_batchnorm=pretrained)
    keep_best = KeepBestWeights(run_dir)
    fit = dict(device=chosen_device, precision=precision, patience=patience, progress=progress)
    stage_seconds: dict[str, float] = {}
    stages = (
        [("head", epochs, lr), ("fine_tune", fine_tune_epochs, fine_tune_lr)] if pretrained else [("train", epochs, lr)]
    )
    for stage, stage_epochs, stage_lr in stages:
        freeze(network.features, frozen=stage == "head")
        module.stage, module.lr = stage, stage_lr
        stage_started = time.perf_counter()
        _fit(module, train_loader, val_loader, stage_epochs, keep_best, **fit)
        stage_seconds[stage] = round(time.perf_counter() - stage_started, 2)
    freeze(network.features, frozen=False)
    keep_best.restore(network)
    network.eval()

    history = module.history
    plot_curves(history, run_dir / "curves.png")
    best = keep_best.best_row or {}
    metrics: dict[str, Any] = {
        "best_epoch": best.get("epoch"),
        "best_stage": best.get("stage"),
        "val_accuracy": best.get("val_accuracy"),
        "val_loss": best.get("val_loss"),
        "num_train": len(train_images.labels),
        "num_val": len(val_images.labels),
        "decode_seconds": round(decode_seconds, 2),
        "stage_seconds": stage_seconds,
    }
    if dataset.test is not None:
        predictor = Predictor.create(network, dataset.classes, device=device, precision=precision)
        test_images = decode_images(dataset.test, preprocessing)
        if len(test_images.labels):
            evaluation = score(
                predictor.probabilities(test_images.images), test_images, dataset.classes, "test", "none"
            )
            metrics["test_accuracy"] = evaluation.accuracy
            metrics["num_test"] = len(test_images.labels)
    metrics["total_seconds"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / "metrics.json", metrics)
    return Run(run_dir, config, dataset.classes, metrics, model=network.cpu().eval())
