"""Datasets that ship inside installed packages, usable by name with no download."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnkit.data.folders import DatasetSplits, ImageList, stratified_split


def _digits(val_split: float, test_split: float, seed: int) -> DatasetSplits:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels), as 8-bit grayscale."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = [np.round(img * (255.0 / 16.0)).astype(np.uint8) for img in bunch.images]
    everything = ImageList([f"builtin:digits/{i:04d}" for i in range(len(images))], bunch.target.tolist(), images)
    train, val, test = stratified_split(everything, (val_split, test_split), seed)
    classes = [str(d) for d in range(10)]
    note = f"built-in digits split {1 - val_split - test_split:.0%}/{val_split:.0%}/{test_split:.0%}, seed {seed}"
    return DatasetSplits("digits", "digits", classes, train, val, test, layout="builtin", notes=[note])


BUILTIN_DATASETS: dict[str, Callable[[float, float, int], DatasetSplits]] = {"digits": _digits}
