"""``cnnkit.train``: one call from a dataset to a finished run folder.

From-scratch models train in one stage. Pretrained models train in two, as in the notes: a new
head on the frozen base, then fine-tuning of the base's top blocks at a lower learning rate.
Both stages run on cached outputs of the frozen layers (several augmented views per image, see
:mod:`cnnkit.train.features`), which on a CPU is many times faster than pushing every image
through the frozen layers each epoch. The best weights by validation accuracy across both
stages are kept, so fine-tuning never leaves a worse model.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from cnnkit.cache import default_cache_dir
from cnnkit.data.datasets import DecodedImages, TensorImageDataset, decode_images, load_dataset, warn_skipped
from cnnkit.data.folders import DatasetSplits
from cnnkit.data.transforms import eval_transform, resolve_augment, train_transform
from cnnkit.errors import CnnkitError
from cnnkit.evaluate.plots import plot_curves
from cnnkit.fileio import write_json, write_yaml
from cnnkit.inference import Predictor
from cnnkit.models.classifier import Classifier, feature_blocks, split_frozen_prefix
from cnnkit.models.registry import create_model, get_model_info
from cnnkit.runtime import (
    inference_batch_size,
    keep_freed_memory,
    lightning_precision,
    pick_device,
    resolve_precision,
)
from cnnkit.train.callbacks import KeepBestWeights
from cnnkit.train.features import CachedFeatureDataset, apply_to_cache, cached_features
from cnnkit.train.module import ClassifierModule, freeze
from cnnkit.train.run import Run, new_run_dir

DEFAULT_EPOCHS = {"scratch": 20, "pretrained": 8, "pretrained_cached": 25}
DEFAULT_FINE_TUNE_EPOCHS = {"cached": 8, "images": 3}  # an epoch on cached activations is ~5x cheaper
DEFAULT_CACHE_VIEWS = 3
SAMPLERS = ("shuffle", "balanced")
CLASS_WEIGHTS = ("none", "auto")


def _quiet_lightning() -> None:
    """Lightning's banners and hints mean nothing to cnnkit users; keep warnings and errors."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*bf16-mixed.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen parts, on purpose
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # Lightning's, not ours


def _check_options(**options: Any) -> None:
    """One-line errors for values no run could use, before any work starts."""
    choices = {"sampler": SAMPLERS, "class_weight": CLASS_WEIGHTS}
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name in choices and value not in choices[name]:
            raise CnnkitError(f"{flag} must be one of {', '.join(choices[name])}, not {value!r}")
        if name in ("epochs", "fine_tune_epochs") and value is not None and value < 0:
            raise CnnkitError(f"{flag} must be 0 or more, not {value}")
        if name in ("batch_size", "cache_views") and value is not None and value < 1:
            raise CnnkitError(f"{flag} must be a positive number, not {value}")
        if name in ("lr", "fine_tune_lr_factor") and value <= 0:
            raise CnnkitError(f"{flag} must be positive, not {value}")
        if name == "unfreeze":
            parse_unfreeze(value, num_blocks=1)


def parse_unfreeze(unfreeze: str, num_blocks: int) -> int | None:
    """``all`` -> None (every block); ``top:N`` -> N; ``auto`` -> the top third of ``num_blocks``."""
    if unfreeze == "all":
        return None
    if unfreeze == "auto":
        return max(1, round(num_blocks / 3))
    if unfreeze.startswith("top:") and unfreeze[4:].isdigit() and int(unfreeze[4:]) > 0:
        return int(unfreeze[4:])
    raise CnnkitError(f"--unfreeze must be auto, all or top:N with N > 0 (e.g. top:3), not {unfreeze!r}")


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, N / (C * n_c): a class with half the images counts twice as much."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise CnnkitError(f"--class-weight auto needs training images of every class; none for class index {missing}")
    return len(labels) / (num_classes * counts)


def views_per_class(labels: torch.Tensor, num_classes: int, views: int, rebalanced: bool) -> torch.Tensor:
    """How many augmented views to cache per training image of each class: ``views``, times k for a
    class that counts k times more per image than the largest class when ``rebalanced`` (by the
    balanced sampler or by inverse-frequency class weights).

    Without the extra views, a small class's few cached inputs would be replayed (or weighted up)
    until the model memorized them. Each class then costs about as much to cache as the largest.
    """
    if not rebalanced:
        return torch.full((num_classes,), views, dtype=torch.long)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    return views * (counts.max() / counts).round().long()


def _loader(dataset: Dataset, labels: torch.Tensor, batch_size: int, sampler: str, seed: int) -> DataLoader:
    """Shuffled batches, or with ``balanced`` each class drawn equally often (oversampling small ones)."""
    generator = torch.Generator().manual_seed(seed)
    if sampler == "balanced":
        counts = torch.bincount(labels).float()
        weights = (1.0 / counts)[labels]
        balanced = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
        return DataLoader(dataset, batch_size=batch_size, sampler=balanced)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def _image_loaders(
    train_images: DecodedImages,
    val_images: DecodedImages,
    train_tf,
    val_tf,
    batch_size: int,
    sampler: str,
    seed: int,
    device: torch.device,
) -> tuple[DataLoader, DataLoader]:
    return (
        _loader(TensorImageDataset(train_images, train_tf), train_images.labels, batch_size, sampler, seed),
        DataLoader(TensorImageDataset(val_images, val_tf), batch_size=inference_batch_size(device)),
    )


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
    )
    trainer.fit(module, train_loader, val_loader)


def _unfreeze(network: Classifier, top: int | None) -> None:
    """Make the whole base trainable, or only its top ``top`` blocks."""
    if top is None:
        freeze(network.features, frozen=False)
        return
    freeze(network.features, frozen=True)
    for block in feature_blocks(network.features)[-top:]:
        freeze(block, frozen=False)


def train(
    data: str | Path | DatasetSplits,
    model: str = "plain_cnn",
    *,
    epochs: int | None = None,
    fine_tune_epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    fine_tune_lr_factor: float = 0.3,
    unfreeze: str = "auto",
    head: str = "linear",
    augment: str = "auto",
    pretrained: bool | None = None,
    dropout: float | None = None,
    weight_decay: float = 0.0,
    class_weight: str = "none",
    sampler: str = "shuffle",
    feature_cache: bool = True,
    cache_views: int | None = None,
    image_cache: str = "ram",
    patience: int = 5,
    val_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
    precision: str = "auto",
    device: str = "auto",
    out: str | Path | None = None,
    progress: bool = True,
) -> Run:
    """Train ``model`` on ``data`` (a folder, a built-in dataset name or a DatasetSplits) and return the run.

    ``pretrained`` defaults to True when the model has ImageNet weights available offline. For
    pretrained models ``epochs`` is the head stage and ``fine_tune_epochs`` (0 to skip) then
    trains ``unfreeze`` (``auto``: the top third of the base's blocks; ``all``; or ``top:N``
    blocks) at ``lr * fine_tune_lr_factor``. Unless ``feature_cache=False``, both stages run on
    cached outputs of the frozen layers for ``cache_views`` augmented views per image (default 3),
    fine-tuning too when the base can be cut below the unfrozen blocks (default 8 epochs, or 3
    when it reads images). ``class_weight="auto"`` weighs the loss by inverse
    class frequency; ``sampler="balanced"`` oversamples small classes instead; either caches k times
    the views of a class it emphasizes k-fold (:func:`views_per_class`). ``image_cache``
    keeps decoded pixels in ``ram``, on ``disk`` or ``off``. Writes the run folder described in
    :mod:`cnnkit.train.run`.
    """
    _quiet_lightning()
    keep_freed_memory()
    started = time.perf_counter()
    _check_options(
        epochs=epochs, fine_tune_epochs=fine_tune_epochs, batch_size=batch_size, cache_views=cache_views, lr=lr,
        fine_tune_lr_factor=fine_tune_lr_factor, sampler=sampler, class_weight=class_weight, unfreeze=unfreeze,
    )  # fmt: skip
    info = get_model_info(model)
    pretrained = info.pretrained == "offline" if pretrained is None else pretrained
    cached_head = pretrained and feature_cache
    if epochs is None:
        epochs = DEFAULT_EPOCHS["pretrained_cached" if cached_head else "pretrained" if pretrained else "scratch"]
    if fine_tune_epochs is None:
        fine_tune_epochs = DEFAULT_FINE_TUNE_EPOCHS["cached" if cached_head and unfreeze != "all" else "images"]
        fine_tune_epochs = fine_tune_epochs if pretrained else 0

    dataset = data if isinstance(data, DatasetSplits) else load_dataset(data, val_split, test_split, seed)
    L.seed_everything(seed, verbose=False)
    model_kwargs: dict[str, Any] = {} if dropout is None else {"dropout": dropout}
    network = create_model(
        model, len(dataset.classes), pretrained=pretrained, image_size=image_size, head=head, **model_kwargs
    )
    preprocessing = network.preprocessing
    augment = resolve_augment(augment, preprocessing)
    unfreeze_top = parse_unfreeze(unfreeze, len(feature_blocks(network.features)))
    views = (DEFAULT_CACHE_VIEWS if augment != "none" else 1) if cache_views is None else cache_views

    decode_started = time.perf_counter()
    train_images = decode_images(
        dataset.train, preprocessing, for_training=augment != "none", warn=False, cache=image_cache
    )
    val_images = decode_images(dataset.val, preprocessing, warn=False, cache=image_cache)
    warn_skipped(train_images.skipped + val_images.skipped)
    decode_seconds = time.perf_counter() - decode_started
    for split, decoded in (("train", train_images), ("val", val_images)):
        if len(decoded.labels) == 0:
            raise CnnkitError(f"no readable images in the {split} split of {dataset.name}")

    chosen_device = pick_device(device)
    precision = resolve_precision(precision, chosen_device)
    weights = class_weights(train_images.labels, len(dataset.classes)) if class_weight == "auto" else None
    rebalanced = sampler == "balanced" or class_weight == "auto"
    class_views = views_per_class(train_images.labels, len(dataset.classes), views, rebalanced)
    run_dir = new_run_dir(out, f"{dataset.name}-{model}")
    config = {
        "model": model,
        "model_kwargs": model_kwargs,
        "head": head,
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
        "unfreeze": "all" if unfreeze_top is None else f"top:{unfreeze_top}",
        "batch_size": batch_size,
        "lr": lr,
        "fine_tune_lr": lr * fine_tune_lr_factor,
        "weight_decay": weight_decay,
        "class_weight": class_weight,
        "class_weights": None if weights is None else [round(w, 6) for w in weights.tolist()],
        "sampler": sampler,
        "feature_cache": cached_head,
        "cache_views": views if cached_head else None,
        "cache_views_per_class": class_views.tolist() if cached_head and rebalanced else None,
        "image_cache": image_cache,
        "patience": patience,
        "precision": precision,
        "device": str(chosen_device),
        "channels_last": True,
        "frozen_batchnorm": pretrained,
        "skipped_files": train_images.skipped + val_images.skipped,
    }
    write_yaml(run_dir / "config.yaml", config)
    write_json(run_dir / "classes.json", dataset.classes)

    val_tf = eval_transform(preprocessing)
    train_tf = train_transform(preprocessing, augment) if augment != "none" else val_tf
    network = network.to(chosen_device, memory_format=torch.channels_last)
    history: list[dict[str, Any]] = []
    keep_best = KeepBestWeights(run_dir, network)
    fit = dict(device=chosen_device, precision=precision, patience=patience, progress=progress)
    module_options = dict(
        weight_decay=weight_decay, class_weights=weights, frozen_batchnorm=pretrained, history=history,
        run_started=started,
    )  # fmt: skip
    stage_seconds: dict[str, float] = {}
    metrics: dict[str, Any] = {}

    if pretrained:
        stage_started = time.perf_counter()
        if cached_head:
            cache = _FeatureCache.build(
                network, unfreeze_top if fine_tune_epochs > 0 else None, train_images, val_images, train_tf, val_tf,
                class_views[train_images.labels],
                settings={"model": model, "preprocessing": preprocessing.to_dict(), "augment": augment},
                device=chosen_device, precision=precision, seed=seed, progress=progress,
            )  # fmt: skip
            metrics["feature_cache_hit"] = cache.hit
            config["fine_tune_input"] = "cached activations" if cache.covers_fine_tuning else "images"
            head_only = Classifier(nn.Identity(), network.head, network.num_features)
            module = ClassifierModule(head_only, lr=lr, stage="head", **module_options)
            loaders = cache.loaders(cache.train_pooled, cache.val_pooled, batch_size, 256, sampler, seed)
        else:
            freeze(network.features, frozen=True)
            module = ClassifierModule(network, lr=lr, stage="head", **module_options)
            loaders = _image_loaders(
                train_images, val_images, train_tf, val_tf, batch_size, sampler, seed, chosen_device
            )
        _fit(module, *loaders, epochs, keep_best, **fit)
        stage_seconds["head"] = round(time.perf_counter() - stage_started, 2)

    stage_started = time.perf_counter()
    if pretrained:
        stage, stage_epochs, stage_lr = "fine_tune", fine_tune_epochs, lr * fine_tune_lr_factor
        keep_best.restore(network)  # fine-tune from the best head, not from the last epoch's
        _unfreeze(network, unfreeze_top)
    else:
        stage, stage_epochs, stage_lr = "train", epochs, lr
    stage_fit = fit
    if cached_head and cache.covers_fine_tuning:
        trained = Classifier(cache.rest, network.head, network.num_features)
        loaders = cache.loaders(cache.train, cache.val, batch_size, inference_batch_size(chosen_device), sampler, seed)
        if chosen_device.type == "cpu":
            # Measured for Lite0's top third on small maps (14x14 and less): fp32 trains 1.5x faster than bf16 autocast
            stage_fit = {**fit, "precision": "fp32"}
    else:
        trained = network
        loaders = _image_loaders(train_images, val_images, train_tf, val_tf, batch_size, sampler, seed, chosen_device)
    if pretrained:
        config["fine_tune_precision"] = stage_fit["precision"]
        write_yaml(run_dir / "config.yaml", config)
    module = ClassifierModule(trained, lr=stage_lr, stage=stage, **module_options)
    _fit(module, *loaders, stage_epochs, keep_best, **stage_fit)
    stage_seconds[stage] = round(time.perf_counter() - stage_started, 2)
    freeze(network.features, frozen=False)
    keep_best.restore(network)
    network.eval()

    plot_curves(history, run_dir / "curves.png")
    best = keep_best.best_row or {}
    metrics.update(
        {
            "best_epoch": best.get("epoch"),
            "best_stage": best.get("stage"),
            "val_accuracy": best.get("val_accuracy"),
            "val_loss": best.get("val_loss"),
            "num_train": len(train_images.labels),
            "num_val": len(val_images.labels),
            "decode_seconds": round(decode_seconds, 2),
            "stage_seconds": stage_seconds,
        }
    )
    if dataset.test is not None:
        from cnnkit.evaluate.metrics import score  # imported here: evaluate.metrics itself loads train.run

        predictor = Predictor.create(network, dataset.classes, device=device, precision=precision)
        test_images = decode_images(dataset.test, preprocessing, cache=image_cache)
        if len(test_images.labels):
            evaluation = score(
                predictor.probabilities(test_images.images), test_images, dataset.classes, "test", "none"
            )
            metrics["test_accuracy"] = evaluation.accuracy
            metrics["num_test"] = len(test_images.labels)
    metrics["total_seconds"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / "metrics.json", metrics)
    return Run(run_dir, config, dataset.classes, metrics, model=network.cpu().eval())


@dataclass
class _FeatureCache:
    """Cached outputs of the frozen part of the base, for the head stage and, if possible, fine-tuning.

    When fine-tuning trains only the top blocks and the base splits cleanly below them
    (:func:`~cnnkit.models.classifier.split_frozen_prefix`), the cache holds the activation maps
    at that cut: the head stage trains on them passed through the rest of the base once, and
    fine-tuning trains the rest and the head on them directly. Otherwise the cache holds the
    pooled output of the whole base and fine-tuning reads images.
    """

    rest: nn.Module | None  # the layers between the cut and the head; None when the cut is the pooled output
    train: np.ndarray
    val: np.ndarray
    train_pooled: np.ndarray  # what the head stage trains on: ``train`` itself, or ``train`` through ``rest``
    val_pooled: np.ndarray
    train_labels: torch.Tensor
    train_views: torch.Tensor  # augmented views cached per training image
    val_labels: torch.Tensor
    hit: bool

    @property
    def covers_fine_tuning(self) -> bool:
        return self.rest is not None

    @classmethod
    def build(
        cls,
        network: Classifier,
        unfreeze_top: int | None,
        train_images: DecodedImages,
        val_images: DecodedImages,
        train_tf,
        val_tf,
        views: torch.Tensor,
        *,
        settings: dict[str, Any],
        device: torch.device,
        precision: str,
        seed: int,
        progress: bool,
    ) -> _FeatureCache:
        cut, rest = network.features, None
        if unfreeze_top is not None:
            _unfreeze(network, unfreeze_top)
            prefix, after = split_frozen_prefix(network.features, network.preprocessing.input_size,
                                                network.preprocessing.channels)  # fmt: skip
            if not isinstance(prefix, nn.Identity):
                cut, rest = prefix, after
        freeze(network.features, frozen=True)
        settings = {**settings, "precision": precision, "cut": "pooled" if rest is None else len(cut)}
        common = dict(
            cache_dir=default_cache_dir(), batch_size=inference_batch_size(device), device=device,
            precision=precision, seed=seed, dtype=np.float32 if rest is None else np.float16, progress=progress,
        )  # fmt: skip
        train, hit = cached_features(
            cut, train_images.images, train_tf, views, sources=train_images.sources,
            settings={**settings, "split": "train", "transform": repr(train_tf)}, **common,
        )  # fmt: skip
        val, _ = cached_features(
            cut, val_images.images, val_tf, 1,
            settings={**settings, "split": "val", "augment": "none", "transform": repr(val_tf)},
            sources=val_images.sources, **common,
        )  # fmt: skip
        train_pooled, val_pooled = train, val
        if rest is not None:
            run = dict(batch_size=inference_batch_size(device), device=device, precision=precision)
            train_pooled, val_pooled = apply_to_cache(rest, train, **run), apply_to_cache(rest, val, **run)
        return cls(rest, train, val, train_pooled, val_pooled, train_images.labels, views, val_images.labels, hit)

    def loaders(
        self, train: np.ndarray, val: np.ndarray, batch_size: int, val_batch_size: int, sampler: str, seed: int
    ):
        train_set = CachedFeatureDataset(train, self.train_labels, self.train_views, seed)
        return (
            _loader(train_set, self.train_labels, batch_size, sampler, seed),
            DataLoader(CachedFeatureDataset(val, self.val_labels), batch_size=val_batch_size),
        )
