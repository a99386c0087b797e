"""Tiling many small images into one grid, and saving titled grids as one figure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cnnkit.fileio import save_figure

_FIGURE_WIDTH_INCHES = 14.0
MAX_PIXELS = 2000  # the longer side of a saved grid figure


def tile(images: np.ndarray, columns: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """Lay (N, H, W) or (N, H, W, 3) images out row by row, ``columns`` per row, ``gap`` pixels apart.

    Gaps and unused cells hold ``fill`` (NaN shows as the figure's background).
    """
    count, height, width = images.shape[:3]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    shape = (rows * (height + gap) - gap, columns * (width + gap) - gap, *images.shape[3:])
    grid = np.full(shape, fill, dtype=np.float32 if np.isnan(fill) else images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid


@dataclass
class Panel:
    """One titled grid in a figure; ``cmap`` colours single-channel grids and is ignored for RGB."""

    title: str
    grid: np.ndarray
    cmap: str = "viridis"


def save_panels(panels: list[Panel], path: str | Path, title: str) -> Path:
    """Stack ``panels`` vertically in one figure, each as tall as its grid's aspect ratio needs, and save it.

    The resolution is chosen so the widest grid keeps about one figure pixel per grid pixel, but the
    figure's longer side stays within ``MAX_PIXELS`` (a tall stack of panels is drawn smaller).
    """
    heights = [panel.grid.shape[0] / panel.grid.shape[1] * _FIGURE_WIDTH_INCHES + 0.3 for panel in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(_FIGURE_WIDTH_INCHES, sum(heights) + 0.5),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        cmap = plt.get_cmap(panel.cmap).with_extremes(bad="white")
        ax.imshow(panel.grid, cmap=cmap, vmin=0, vmax=255, interpolation="nearest", aspect="equal")
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.axis("off")
    fig.suptitle(title)
    widest = max(panel.grid.shape[1] for panel in panels)
    longest_inches = max(_FIGURE_WIDTH_INCHES, sum(heights) + 0.5)
    dpi = min(np.clip(widest / _FIGURE_WIDTH_INCHES, 60, 180), MAX_PIXELS * 0.95 / longest_inches)
    save_figure(fig, path, dpi=max(20, int(dpi)))
    return Path(path)
