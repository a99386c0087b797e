"""Pooled features of a pretrained network's frozen base: what near-duplicate, label and outlier checks compare.

They go through training's feature cache (:func:`cnnkit.train.features.cached_features`), keyed by
the model, its weights, preprocessing and the files, so checking the same data again costs no
network time. Images are decoded only when the cache misses. This module is the only place that
imports from :mod:`cnnkit.train`.

On a CPU the base runs in ONNX Runtime (:class:`OnnxRuntimeBase`): EfficientNet-Lite0 took 45 ms
per image there against 200 ms in eager PyTorch on the same busy 2-core machine, which is most of
a cold check. Its features match PyTorch's to 1e-5.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.cache import default_cache_dir
from cnnkit.data.datasets import LazyImages
from cnnkit.data.decode import decode_file, fit_channels
from cnnkit.data.transforms import center_crop_resize, eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.models.registry import create_model, get_model_info
from cnnkit.runtime import inference_batch_size, keep_freed_memory, pick_device, resolve_precision

DEFAULT_MODEL = "efficientnet_lite0"
ONNX_BATCH = 16


class OnnxRuntimeBase(nn.Module):
    """A frozen base that runs in ONNX Runtime, exported on its first call (so only when the cache misses).

    The PyTorch module stays inside as ``base``, so the feature cache's weights fingerprint, taken
    from ``state_dict()``, is that of the real weights. Should the export fail (an operator ONNX
    lacks), it runs the PyTorch module instead.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self._session: Any = None
        self._exported = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self._exported:
            self._session, self._exported = self._export(images), True
        if self._session is None:
            return self.base(images)
        return torch.from_numpy(self._session.run(None, {"images": images.float().contiguous().numpy()})[0])

    def _export(self, example: torch.Tensor) -> Any:
        import onnxruntime

        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and 20x faster to export
                torch.onnx.export(
                    self.base, (example.float().contiguous(),), buffer, input_names=["images"],
                    output_names=["features"], dynamic_axes={"images": {0: "batch"}}, dynamo=False,
                )  # fmt: skip
        except Exception:  # any export failure leaves PyTorch to do the work
            return None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see cnnkit.export.onnx
        return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


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
    on_onnx = chosen.type == "cpu"
    if on_onnx:
        base, precision = OnnxRuntimeBase(base), "fp32"

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
        "engine": "onnxruntime" if on_onnx else "torch",
    }
    batch_size = ONNX_BATCH if on_onnx else inference_batch_size(chosen)
    features, hit = cached_features(
        base, images, transform, 1, settings=settings, sources=paths, cache_dir=default_cache_dir(),
        batch_size=batch_size, device=chosen, precision=precision, seed=0, progress=progress,
    )  # fmt: skip
    return np.asarray(features, dtype=np.float32), hit


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so that a dot product is a cosine similarity.

    Not centred on the dataset's mean: the thresholds must mean the same on a folder of 40 images
    as on one of 40,000.
    """
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
