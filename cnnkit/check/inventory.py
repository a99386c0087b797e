"""Read every file once and keep only small facts about it: size, colour mode, a pixel digest, perceptual hashes.

The decoder is training's own (:func:`cnnkit.data.decode.decode_bytes`), so "unreadable" here means
exactly what training would skip. Pixels are not kept: a dataset of any size costs a few hundred
bytes per file, and the few images a report shows are decoded again.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from cnnkit.check.findings import (
    SPLIT_ORDER,
    ImageRef,
    Imbalance,
    Inventory,
    OversizedFile,
    UnreadableFile,
)
from cnnkit.data.decode import UndecodableImage, decode_bytes
from cnnkit.data.folders import DatasetSplits

OVERSIZED_MEGAPIXELS = 24.0  # larger than a 6000 x 4000 photo
OVERSIZED_MEGABYTES = 20.0
IMBALANCE_WARNING_RATIO = 3.0  # the same threshold as the run report's dataset section
LUMA_WEIGHTS = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)

Item = TypeVar("Item")


@dataclass
class FileFacts:
    """What one read of a file tells; ``error`` is set (and the rest empty) when it is not a readable image."""

    ref: ImageRef
    megabytes: float
    error: str | None = None
    width: int = 0
    height: int = 0
    mode: str = "unknown"
    digest: str = ""  # of the decoded RGB pixels and their shape
    phash: np.ndarray | None = None  # 64 booleans
    mirrored_phash: np.ndarray | None = None  # of the horizontally flipped image
    mean_luma: float = 0.0
    luma_std: float = 0.0

    @property
    def readable(self) -> bool:
        return self.error is None


def show_progress(items: Iterable[Item], total: int, description: str, progress: bool) -> Iterator[Item]:
    """A Rich bar with ETA on stderr when ``progress`` is set; the items unchanged either way."""
    if not progress:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, total=total, description=description, console=Console(stderr=True))


def parallel_map(
    function: Callable[[ImageRef], FileFacts], refs: list[ImageRef], description: str, progress: bool
) -> list[FileFacts]:
    """``function`` over every file in a few threads (the decoders and resizers release the GIL), in order."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(show_progress(pool.map(function, refs), len(refs), description, progress))


def read_facts(ref: ImageRef) -> FileFacts:
    """Decode one file and summarize it, with the hashes and brightness near duplicates and outliers need."""
    try:
        data = Path(ref.path).read_bytes()
    except OSError as exc:
        return FileFacts(ref, 0.0, error=exc.strerror or str(exc))
    facts = FileFacts(ref, len(data) / 1e6)
    try:
        pixels = decode_bytes(data, 3)
    except UndecodableImage as exc:
        facts.error = str(exc) or "not an image"
        return facts
    facts.height, facts.width = pixels.shape[-2:]
    facts.digest = pixel_digest(pixels)
    facts.mode = colour_mode(data)
    add_perceptual_facts(facts, pixels)
    return facts


def pixel_digest(pixels: torch.Tensor) -> str:
    """Equal for two files exactly when their decoded pixels are (a re-saved PNG, a copied file)."""
    digest = hashlib.blake2b(str(tuple(pixels.shape)).encode(), digest_size=16)
    digest.update(pixels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def colour_mode(data: bytes) -> str:
    """The file's own colour mode, read from its header only (the decoded pixels are always RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.mode
    except (UnidentifiedImageError, OSError, ValueError):
        return "unknown"


def add_perceptual_facts(facts: FileFacts, pixels: torch.Tensor) -> None:
    """Perceptual hashes of the image and of its mirror image, and how bright and how flat it is."""
    import imagehash
    from PIL import Image, ImageOps

    luma = (pixels.float() * LUMA_WEIGHTS).sum(0)
    facts.mean_luma, facts.luma_std = float(luma.mean()), float(luma.std()) if luma.numel() > 1 else 0.0
    grey = Image.fromarray(luma.round().clamp(0, 255).to(torch.uint8).numpy())
    facts.phash = imagehash.phash(grey).hash.flatten()
    facts.mirrored_phash = imagehash.phash(ImageOps.mirror(grey)).hash.flatten()


def scan_files(refs: list[ImageRef], progress: bool) -> list[FileFacts]:
    """:func:`read_facts` for every file, with a progress bar."""
    return parallel_map(read_facts, refs, "Reading images", progress)


def class_imbalance(splits: DatasetSplits) -> Imbalance:
    """How uneven the training classes are, and what to do about it when it matters."""
    counts = splits.train.class_counts(len(splits.classes))
    largest, smallest = int(np.argmax(counts)), int(np.argmin(counts))
    ratio = counts[largest] / counts[smallest] if counts[smallest] else float("inf")
    advice = None
    if ratio >= IMBALANCE_WARNING_RATIO:
        advice = (
            f"{splits.classes[largest]} has {ratio:.1f}x the training images of {splits.classes[smallest]}: "
            "train with --class-weight auto or --sampler balanced, and read per-class recall, not accuracy"
        )
    return Imbalance(round(ratio, 3), splits.classes[largest], splits.classes[smallest], advice)


def build_inventory(splits: DatasetSplits, facts: list[FileFacts]) -> Inventory:
    """Counts per split and class, sizes, colour modes, and the files training would skip or choke on."""
    counts = {
        split: dict(zip(splits.classes, images.class_counts(len(splits.classes)), strict=True))
        for split in SPLIT_ORDER
        if (images := getattr(splits, split)) is not None
    }
    readable = [f for f in facts if f.readable]
    oversized = [
        OversizedFile(f.ref.path, f.width, f.height, round(f.megabytes, 2))
        for f in readable
        if f.width * f.height / 1e6 > OVERSIZED_MEGAPIXELS or f.megabytes > OVERSIZED_MEGABYTES
    ]
    return Inventory(
        counts=counts,
        sizes=[(f.width, f.height) for f in readable],
        modes=dict(Counter(f.mode for f in readable).most_common()),
        unreadable=[UnreadableFile(f.ref.path, f.error or "") for f in facts if not f.readable]
        + [UnreadableFile(path, why) for path, why in splits.skipped.items()],  # left out by the scan itself
        oversized=oversized,
        imbalance=class_imbalance(splits),
    )
