"""Pooled features of a pretrained network's frozen base: what near-duplicate, label and outlier checks compare.

They go through training's feature cache (:func:`cnnkit.train.features.cached_features`), keyed by
the model, its weights, preprocessing and the files, so checking the same data again costs no
network time. Images are decoded only when the cache misses. This module is the only place that
imports from :mod:`cnnkit.train`.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnkit.cache import default_cache_dir
from cnnkit.data.datasets import LazyImages
from cnnkit.data.decode import decode_file, fit_channels
from cnnkit.data.transforms import center_crop_resize, eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.models.registry import create_model, get_model_info
from cnnkit.runtime import inference_batch_size, keep_freed_memory, pick_device, resolve_precision

DEFAULT_MODEL = "efficientnet_lite0"


def embedding_network(model: str) -> torch.nn.Module:
    """The pretrained classifier ``model``; embeddings of random weights would find nothing."""
    info = get_model_info(model)
    if info.pretrained == "none":
        raise CnnkitError(
            f"--model {model} has no pretrained weights; pick one that has (see 'cnnkit models'), "
            f"e.g. {DEFAULT_MODEL}, which works offline"
        )
    return create_model(model, pretrained=True)


def embed_files(
    paths: list[str],
    model: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, bool]:
    """(N, F) float32 pooled features of readable image files, and whether they came from the cache."""
    keep_freed_memory()
    network = embedding_network(model)
    chosen = pick_device(device)
    precision = resolve_precision(precision, chosen)
    preprocessing = network.preprocessing
    base = network.features.to(chosen, memory_format=torch.channels_last).eval()
    base.requires_grad_(False)

    def prepare(index: int) -> torch.Tensor:
        image = fit_channels(decode_file(paths[index], preprocessing.channels), preprocessing.channels)
        return center_crop_resize(image, preprocessing.input_size, preprocessing.crop_pct, preprocessing.interpolation)

    from cnnkit.train.features import cached_features

    size = preprocessing.input_size
    images = LazyImages(prepare, list(range(len(paths))), (preprocessing.channels, size, size))
    transform = eval_transform(preprocessing)
    settings = {
        "purpose": "check",
        "model": model,
        "preprocessing": preprocessing.to_dict(),
        "transform": repr(transform),
        "precision": precision,
        "cut": "pooled",
    }
    features, hit = cached_features(
        base, images, transform, 1, settings=settings, sources=paths, cache_dir=default_cache_dir(),
        batch_size=inference_batch_size(chosen), device=chosen, precision=precision, seed=0, progress=progress,
    )  # fmt: skip
    return np.asarray(features, dtype=np.float32), hit


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so that a dot product is a cosine similarity.

    Not centred on the dataset's mean: the thresholds must mean the same on a folder of 40 images
    as on one of 40,000.
    """
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
