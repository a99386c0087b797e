"""Heatmaps as pictures: a jet colormap blended over the photo, written as a PNG of the photo's size, or
with a colour bar and a caption saying what the colours explain."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from PIL import Image

from cnnkit.fileio import atomic_path

DEFAULT_ALPHA = 0.4
MAX_SIDE = 2000  # the longer side of a captioned overlay, in pixels
_DPI = 100
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


def save_captioned_overlay(overlay: np.ndarray, caption: str, path: str | Path) -> Path:
    """``overlay`` (H, W, 3) with the colormap's bar beside it and ``caption`` above, as one PNG.

    The photo keeps its size up to ``MAX_SIDE`` pixels on its longer side (larger ones are shrunk,
    small ones enlarged to 400 px so the caption fits). The caption is also the PNG's ``Description``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from cnnkit.fileio import save_figure

    height, width = overlay.shape[:2]
    scale = min(MAX_SIDE * 0.85 / max(height, width), max(1.0, 400 / width))
    fig, ax = plt.subplots(figsize=(width * scale / _DPI + 1.1, height * scale / _DPI + 0.5), layout="constrained")
    ax.imshow(overlay, interpolation="bilinear" if scale < 1 else "nearest")
    ax.set_axis_off()
    ax.set_title(caption, fontsize=9, loc="left", wrap=True)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("evidence for the class (0 none, 1 strongest)", fontsize=8)
    save_figure(fig, path, dpi=_DPI, metadata={"Description": caption})
    return Path(path)
