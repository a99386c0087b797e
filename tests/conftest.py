"""Shared fixtures: small synthetic image folders and trained runs reused across test modules.

Training is the slow part of the suite, so each kind of run is trained once per session.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = Path(os.environ.get("CNNKIT_DATASETS", SHARED / "datasets"))


def shared_dataset(name: str) -> Path:
    """The folder of shared dataset ``name``; skips the calling test or fixture where it is missing.

    A clone has no ``../shared`` beside it unless it was put there (or ``CNNKIT_DATASETS`` names one),
    and tests that need real photos must say so rather than fail.
    """
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"needs the shared dataset folder {path}, which is missing (set CNNKIT_DATASETS)")
    return path


def sklearn_image(name: str) -> str:
    """Path of one of scikit-learn's sample photos (flower.jpg, china.jpg)."""
    import sklearn

    return os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", name)


def write_images(folder: Path, count: int, size: tuple[int, int] = (24, 24), suffix: str = ".png", seed: int = 0):
    """``count`` random RGB images named ``image_000`` onwards (format from ``suffix``); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"image_{i:03d}{suffix}" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return paths


def write_shapes_dataset(root: Path, per_class: int = 24, size: int = 48, seed: int = 0, layout: str = "flat") -> Path:
    """Three easy classes drawn on noise: a bright square ('square'), a bright disc ('disc'), and
    horizontal stripes ('stripes'), each at a random place and colour. Learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for cls in ("disc", "square", "stripes"):
        for i in range(per_class):
            image = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2).tolist()
            r = size // 5
            color = rng.integers(160, 256, 3)
            if cls == "disc":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif cls == "square":
                mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            else:
                mask = (yy // 4) % 2 == 0
            image[mask] = color
            if layout == "flat":
                folder = root / cls
            else:
                split = "train" if i < per_class * 0.6 else ("val" if i < per_class * 0.8 else "test")
                folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{cls}_{i:03d}.png")
    return root


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the feature and image caches of the test session out of the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cnnkit-cache")
    os.environ["CNNKIT_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def plain_run(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A plain_cnn trained from scratch on the shapes dataset at 48 px (a few seconds)."""
    import cnnkit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cnnkit.train(
            shapes_dir,
            model="plain_cnn",
            epochs=8,
            image_size=48,
            augment="none",
            progress=False,
            out=tmp_path_factory.mktemp("runs") / "plain",
        )


@pytest.fixture(scope="session")
def lite0_run(tmp_path_factory: pytest.TempPathFactory):
    """EfficientNet-Lite0 with a new head on a small hymenoptera subset, no fine-tuning.

    Thirty head epochs on cached activations cost about a second more than two and reach about 93% on
    the whole validation split, against 77% for two, whose many near-50/50 images made int8 parity a coin toss.
    """
    import cnnkit
    from cnnkit.data import load_dataset

    dataset = load_dataset(shared_dataset("hymenoptera"))
    dataset.train = dataset.train.subset(list(range(0, len(dataset.train), 4)))
    dataset.val = dataset.val.subset(list(range(0, len(dataset.val), 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cnnkit.train(
            dataset,
            model="efficientnet_lite0",
            epochs=30,
            fine_tune_epochs=0,
            image_size=160,
            progress=False,
            out=tmp_path_factory.mktemp("runs") / "lite0",
        )
