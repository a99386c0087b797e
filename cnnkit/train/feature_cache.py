"""The cached outputs of a pretrained base's frozen layers, for the head stage and, when possible, fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cnnkit.cache import default_cache_dir
from cnnkit.config import Sampler
from cnnkit.data.datasets import DecodedImages
from cnnkit.models.classifier import Classifier, split_frozen_prefix
from cnnkit.runtime import inference_batch_size
from cnnkit.train.features import CachedFeatureDataset, apply_to_cache, cached_features
from cnnkit.train.loaders import Loaders, train_loader
from cnnkit.train.module import freeze, unfreeze_top_blocks


@dataclass
class FeatureCache:
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
    train_labels: torch.Tensor
    train_views: torch.Tensor  # augmented views cached per training image
    val_labels: torch.Tensor
    hit: bool
    device: torch.device
    precision: str

    @property
    def covers_fine_tuning(self) -> bool:
        return self.rest is not None

    @cached_property
    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """What the head stage trains on: the cache itself, or the cache through ``rest`` (computed only if needed)."""
        if self.rest is None:
            return self.train, self.val
        run = dict(batch_size=inference_batch_size(self.device), device=self.device, precision=self.precision)
        return apply_to_cache(self.rest, self.train, **run), apply_to_cache(self.rest, self.val, **run)

    @classmethod
    def build(
        cls,
        network: Classifier,
        unfreeze_top: int | None,
        train_images: DecodedImages,
        val_images: DecodedImages,
        transforms: tuple[Any, Any],
        views: torch.Tensor,
        *,
        settings: dict[str, Any],
        device: torch.device,
        precision: str,
        seed: int,
        progress: bool,
    ) -> FeatureCache:
        """Extract (or find on disk) the frozen layers' outputs for every training view and validation image."""
        train_tf, val_tf = transforms
        cut, rest = network.features, None
        if unfreeze_top is not None:
            unfreeze_top_blocks(network, unfreeze_top)
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
        return cls(rest, train, val, train_images.labels, views, val_images.labels, hit, device, precision)

    def loaders(self, pooled: bool, batch_size: int, sampler: Sampler, seed: int) -> Loaders:
        """Batches of cached pooled vectors (head stage) or activation maps (fine-tuning)."""
        train, val = self.pooled if pooled else (self.train, self.val)
        train_set = CachedFeatureDataset(train, self.train_labels, self.train_views, seed)
        loader, generator = train_loader(train_set, self.train_labels, batch_size, sampler, seed)
        val_batch = 256 if pooled else inference_batch_size(self.device)
        val_loader = DataLoader(CachedFeatureDataset(val, self.val_labels), batch_size=val_batch)
        return Loaders(loader, val_loader, [generator, train_set.generator])
