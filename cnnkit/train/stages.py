"""A run as a plan of stages, and how one stage is fitted with Lightning.

From-scratch models have one stage (``train``). Pretrained models have two: ``head`` (a new head
on the frozen base, on cached features when possible) and ``fine_tune`` (the base's top blocks at
a lower learning rate, on cached activations when the base can be cut below them, else on images).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from cnnkit.config import Logger, Schedule
from cnnkit.data.shards import ShardImages
from cnnkit.models.classifier import Classifier
from cnnkit.runtime import lightning_precision
from cnnkit.train.callbacks import AtomicCheckpointIO, RunProgress, RunRecorder
from cnnkit.train.distributed import current, share_loaders
from cnnkit.train.feature_cache import FeatureCache
from cnnkit.train.loaders import Loaders, image_loaders
from cnnkit.train.module import ClassifierModule, freeze, unfreeze_top_blocks
from cnnkit.train.prepare import Prepared
from cnnkit.train.progress import EpochProgress


@dataclass
class Stage:
    """One call of ``Trainer.fit``: what it trains, on which batches, for how long."""

    name: str
    epochs: int
    lr: float
    precision: str
    build: Callable[[], tuple[Classifier, Loaders]]  # the trained model (may share layers with the network)
    begin: Callable[[], None] = lambda: None  # run when the stage starts, also when resumed
    module_class: type[ClassifierModule] = ClassifierModule  # LocalizerModule for localization
    module_options: dict[str, Any] = field(default_factory=dict)
    auto_schedule: Schedule = Schedule.plateau  # what ``--schedule auto`` means for this stage

    def schedule(self, configured: Schedule) -> Schedule:
        return self.auto_schedule if configured == Schedule.auto else configured


def build_feature_cache(prep: Prepared, progress: bool) -> FeatureCache | None:
    """The frozen layers' cached outputs for a pretrained model, or None when the run reads images."""
    if not prep.facts.feature_cache:
        return None
    if isinstance(prep.train_images.images, ShardImages):  # streamed images are read in order, not by index
        prep.record(feature_cache=False)
        return None
    network, facts = prep.network, prep.facts
    cache = FeatureCache.build(
        network, prep.unfreeze_top if facts.fine_tune_epochs > 0 else None, prep.train_images, prep.val_images,
        prep.transforms, prep.class_views[prep.train_images.labels],
        settings={"model": prep.config.model, "preprocessing": facts.preprocessing.to_dict(), "augment": facts.augment},
        device=prep.device, precision=facts.precision, seed=prep.config.seed, progress=progress,
    )  # fmt: skip
    prep.record(fine_tune_input="cached activations" if cache.covers_fine_tuning else "images")
    return cache


def plan_stages(prep: Prepared, cache: FeatureCache | None, recorder_best: Callable[[nn.Module], None]) -> list[Stage]:
    """The stages of this run, in order; ``recorder_best`` restores the best weights so far."""
    network, facts, config = prep.network, prep.facts, prep.config

    def images() -> Loaders:
        return image_loaders(
            prep.train_images, prep.val_images, *prep.transforms, batch_size=config.batch_size,
            sampler=config.sampler, seed=config.seed, device=prep.device,
        )  # fmt: skip

    def on_cache(trained: nn.Module, pooled: bool) -> tuple[Classifier, Loaders]:
        model = Classifier(trained, network.head, network.num_features)
        return model, cache.loaders(pooled, config.batch_size, config.sampler, config.seed)

    if not facts.pretrained:
        return [Stage("train", facts.epochs, config.lr, facts.precision, lambda: (network, images()))]
    if cache is not None:
        head = Stage("head", facts.epochs, config.lr, facts.precision, lambda: on_cache(nn.Identity(), True))
    else:
        head = Stage("head", facts.epochs, config.lr, facts.precision, lambda: (network, images()),
                     begin=lambda: freeze(network.features, frozen=True))  # fmt: skip
    # Warm-up then annealing: on flowers128 the plateau schedule's first fine-tuning epoch at the full rate lost
    # 5-7 points of validation accuracy; one-cycle reached the same test accuracy in 5 epochs as plateau in 8.
    fine_tune = Stage("fine_tune", facts.fine_tune_epochs, facts.fine_tune_lr, facts.precision,
                      lambda: (network, images()), auto_schedule=Schedule.one_cycle)  # fmt: skip
    if cache is not None and cache.covers_fine_tuning:
        fine_tune.build = lambda: on_cache(cache.rest, False)
        if prep.device.type == "cpu":
            # Measured for Lite0's top third on small maps (14x14 and less): fp32 trains 1.5x faster than bf16
            fine_tune.precision = "fp32"

    def begin_fine_tuning() -> None:
        recorder_best(network)  # fine-tune from the best head, not from the last epoch's
        unfreeze_top_blocks(network, prep.unfreeze_top)

    fine_tune.begin = begin_fine_tuning
    prep.record(fine_tune_precision=fine_tune.precision)
    return [head, fine_tune]


def fit_stage(
    stage: Stage, prep: Prepared, progress: RunProgress, *, resume_from: Path | None, extend: bool, bars: bool,
    later_epochs: int = 0, extra_callbacks: Sequence[L.Callback] = (),
) -> None:  # fmt: skip
    """Fit one stage; ``resume_from`` continues it from the run's checkpoint instead of from its start."""
    model, loaders = stage.build()
    processes = current()
    loaders = share_loaders(loaders, processes)
    module = stage.module_class(
        model, lr=stage.lr, weight_decay=prep.config.weight_decay, class_weights=prep.class_weights,
        frozen_batchnorm=prep.facts.pretrained, label_smoothing=prep.facts.label_smoothing,
        one_cycle=stage.schedule(prep.config.schedule) == Schedule.one_cycle, optimizer=prep.config.optimizer,
        **stage.module_options,
    )  # fmt: skip
    recorder = RunRecorder(
        prep.run_dir, prep.network, progress, stage.name, loaders.generators, reset_early_stopping=extend
    )
    callbacks: list[L.Callback] = [
        L.pytorch.callbacks.EarlyStopping(
            monitor=module.monitor, mode="max", patience=prep.config.patience, check_on_train_epoch_end=False
        ),
        recorder,
        *extra_callbacks,
    ]
    if bars:
        callbacks.append(EpochProgress(progress.rows, stage.name, later_epochs))  # after the recorder
    trainer = L.Trainer(
        accelerator="gpu" if prep.device.type in ("cuda", "mps") else "cpu", **processes.trainer_options(),
        max_epochs=stage.epochs,
        precision=lightning_precision(stage.precision), callbacks=callbacks, logger=_loggers(prep),
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()], default_root_dir=prep.run_dir,
    )  # fmt: skip
    _fit(trainer, module, loaders, resume_from)
    recorder.finish_stage(trainer)


def _fit(trainer: L.Trainer, module: ClassifierModule, loaders: Loaders, resume_from: Path | None) -> None:
    """``trainer.fit``, where Ctrl-C stays a KeyboardInterrupt (Lightning turns it into ``sys.exit(1)``)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, loaders.train, loaders.val, ckpt_path=resume_from, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C once it caught one


def _loggers(prep: Prepared) -> list | bool:
    if prep.config.logger != Logger.tensorboard:
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(save_dir=prep.run_dir, name="tensorboard", version="", default_hp_metric=False)]
