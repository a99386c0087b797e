"""Heatmaps as pictures: a jet colormap blended over the photo, written as a PNG of the photo's size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from PIL import Image

from cnnkit.fileio import atomic_path

DEFAULT_ALPHA = 0.4
_UNSEEN_DIMMING = 0.5


def to_rgb_array(image: torch.Tensor) -> np.ndarray:
    """A uint8 (C, H, W) tensor, grey or colour, as an (H, W, 3) uint8 array."""
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else np.ascontiguousarray(array[:, :, :3])


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map values in [0, 1] to colours: blue where cold, red where hot."""
    rgba = matplotlib.colormaps[colormap](np.clip(heatmap, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, seen: np.ndarray | None = None
) -> np.ndarray:
    """Blend the coloured heatmap over an (H, W, 3) uint8 image with weight ``alpha``.

    The notes add ``0.4 * heatmap`` to the photo, which saturates bright photos to white; blending
    (``(1 - alpha) * photo + alpha * heatmap``) keeps them readable. Pixels outside ``seen`` (a
    boolean mask of what the network was shown after cropping) are dimmed and left uncoloured.
    """
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(heatmap).astype(np.float32)
    if seen is not None:
        blended = np.where(seen[..., None], blended, _UNSEEN_DIMMING * image.astype(np.float32))
    return blended.round().clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array as a PNG at exactly that size, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
