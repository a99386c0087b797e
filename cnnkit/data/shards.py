"""Streaming shards: a dataset written once as WebDataset tar files, then read with bounded memory.

WebDataset's format is plain POSIX tar: each sample is ``KEY.EXT`` (the image file's own bytes,
never re-encoded) beside ``KEY.cls`` (the class index as text), so any tar tool, WebDataset
itself, or Lightning's ecosystem reads the shards. :func:`write_shards` splits the data exactly
as ``cnnkit train`` would (the split is fixed from then on), checks every image decodes, and
writes one set of shards per split and, last, ``shards.json``: the class map, each split's
shards, labels and source files, and a SHA-256 over every sample's key, label and bytes.

Training streams the train split (:class:`ShardStream`): each epoch a seeded generator orders
the shards, a shuffle buffer mixes samples across them, every rank keeps its equal share of that
one global order, and only the images of its share are decoded. Memory holds the buffer's
encoded bytes and a batch, whatever the dataset's size. The validation and test splits are
decoded into memory at the model's input size, as from a folder.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from cnnkit.data.decode import UndecodableImage, decode_bytes
from cnnkit.data.folders import DatasetSplits, ImageList
from cnnkit.data.prepare import parallel_map, prepare_decoded
from cnnkit.errors import CnnkitError
from cnnkit.fileio import read_json, write_json
from cnnkit.models.config import Preprocessing
from cnnkit.progress import tracked

Track = Callable[[Iterable[Any], int, str], Iterable[Any]]
MANIFEST = "shards.json"
FORMAT = "webdataset"
VERSION = 1
SHUFFLE_BUFFER = 2048  # samples (encoded bytes) mixed across shards while streaming
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """``256MB``, ``1.5GB``, ``64MiB`` or a number of bytes -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise CnnkitError(f"--shard-size must be a size such as 256MB, 1GB or 64MiB, not {text!r}")
    return max(1, int(float(match[1]) * _UNITS[(match[2] or "").upper()]))


def is_shard_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


@dataclass
class ShardSummary:
    """What :func:`write_shards` wrote, and how fast."""

    out: Path
    counts: dict[str, int]
    shards: int
    bytes: int
    seconds: float
    content_sha256: str
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return sum(self.counts.values()) / max(self.seconds, 1e-9)


def shard(
    data: str | Path, out: str | Path, shard_size: int | str = "256MB", *, val_split: float = 0.15,
    test_split: float = 0.15, seed: int = 0, max_pixels: int | None = None, track: Track | None = None,
) -> ShardSummary:  # fmt: skip
    """Split ``data`` as ``cnnkit train`` would (same options, same split) and write it into ``out`` as shards."""
    from cnnkit.data.builtin import BUILTIN_DATASETS
    from cnnkit.data.folders import scan_folder

    size = parse_size(shard_size) if isinstance(shard_size, str) else shard_size
    if is_shard_folder(data):
        raise CnnkitError(f"{data} already holds shards; train on it with 'cnnkit train {data}'")
    if isinstance(data, str) and data in BUILTIN_DATASETS and not Path(data).exists():
        dataset = BUILTIN_DATASETS[data](val_split, test_split, seed)
    else:  # a folder, as load_dataset reads it; scanned here so that only datasets.py imports this module
        dataset = scan_folder(
            data, val_split, test_split, seed, **({} if max_pixels is None else {"max_pixels": max_pixels})
        )
    return write_shards(dataset, out, size, track)


def write_shards(dataset: DatasetSplits, out: str | Path, shard_size: int, track: Track | None = None) -> ShardSummary:
    """Write every split of ``dataset`` into ``out`` as tar shards of about ``shard_size`` bytes each.

    ``track(items, total, description)`` may wrap each split's files to show progress.
    """
    import webdataset

    out = Path(out)
    if is_shard_folder(out) or (out.is_dir() and any(out.iterdir())):
        raise CnnkitError(f"{out} is not empty; give a new folder to write the shards into")
    out.mkdir(parents=True, exist_ok=True)
    started, digest = time.perf_counter(), hashlib.sha256()
    splits: dict[str, Any] = {}
    skipped: dict[str, str] = dict(dataset.skipped)
    for name in ("train", "val", "test"):
        images = getattr(dataset, name)
        if images is None:
            continue
        shards: list[dict[str, Any]] = []
        writer = webdataset.ShardWriter(str(out / f"{name}-%06d.tar"), maxsize=shard_size, verbose=0, encoder=False)
        kept_sources, kept_labels = [], []
        if name == "train":  # a seeded order, so that the classes mix in every shard and the shuffle buffer
            images = images.subset(np.random.default_rng(0).permutation(len(images)))
        for index, (source, label, data) in enumerate(_checked_files(images, skipped, dataset.max_pixels, track, name)):
            key = f"{index:09d}"
            writer.write({"__key__": key, _extension(source): data, "cls": str(label).encode()})
            if not shards or shards[-1]["file"] != Path(writer.fname).name:  # it began a new shard for this one
                shards.append({"file": Path(writer.fname).name, "count": 0})
            shards[-1]["count"] += 1
            digest.update(f"{name}/{key}/{label}/{len(data)}\n".encode())
            digest.update(data)
            kept_sources.append(source)
            kept_labels.append(label)
        writer.close()
        splits[name] = {"shards": shards, "labels": kept_labels, "sources": kept_sources}
    files = [out / shard["file"] for split in splits.values() for shard in split["shards"]]
    for leftover in set(out.glob("*.tar")) - set(files):  # a shard the writer opened but never filled
        leftover.unlink()
    manifest = {
        "format": FORMAT, "version": VERSION, "name": dataset.name, "root": dataset.root, "classes": dataset.classes,
        "layout": dataset.layout, "content_sha256": digest.hexdigest(), "splits": splits, "skipped": skipped,
    }  # fmt: skip
    write_json(out / MANIFEST, manifest)  # last: a folder with a manifest holds complete shards
    seconds = time.perf_counter() - started
    counts = {name: len(split["labels"]) for name, split in splits.items()}
    size = sum(path.stat().st_size for path in files)
    return ShardSummary(out, counts, len(files), size, seconds, manifest["content_sha256"], skipped)


def _extension(source: str) -> str:
    """The sample's image entry: its file's extension (``jpg``, ``png``...), ``png`` for in-memory pixels."""
    suffix = Path(source).suffix.lower().lstrip(".")
    return {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix) if suffix.isalnum() else "png"


def _encoded(images: ImageList, index: int) -> bytes:
    if images.arrays is None:
        return Path(images.sources[index]).read_bytes()
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(images.arrays[index])).save(buffer, format="PNG")
    return buffer.getvalue()


def _checked_files(
    images: ImageList, skipped: dict[str, str], max_pixels: int, track: Track | None, split: str
) -> Iterator[tuple[str, int, bytes]]:
    """(source, label, encoded bytes) of every image that decodes, in order; the others go to ``skipped``."""

    def check(index: int) -> tuple[str, int, bytes] | str:
        try:
            data = _encoded(images, index)
            decode_bytes(data, 3, max_pixels)
        except (OSError, UndecodableImage) as exc:
            return str(exc)
        return images.sources[index], images.labels[index], data

    checked = parallel_map(check, range(len(images)))
    if track is not None:
        checked = track(checked, len(images), f"Sharding {split}")
    for index, result in enumerate(checked):
        if isinstance(result, str):
            skipped[images.sources[index]] = result
        else:
            yield result


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass
class ShardedImageList(ImageList):
    """A split stored in shards: ``sources`` and ``labels`` from the manifest, pixels in ``shards`` (paths).

    ``stream``: read anew each epoch (the train split) instead of decoded once into memory.
    """

    shards: list[str] = field(default_factory=list)
    stream: bool = False


def read_manifest(folder: str | Path) -> dict[str, Any]:
    manifest = read_json(Path(folder) / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CnnkitError(f"{Path(folder) / MANIFEST} is not a cnnkit shard manifest; write it with 'cnnkit shard'")
    return manifest


def shard_dataset(folder: str | Path) -> DatasetSplits:
    """The dataset of a shard folder, split as it was when sharded; its shards are read only when used."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    splits: dict[str, ShardedImageList] = {}
    for name, split in manifest["splits"].items():
        paths = [str(folder / shard["file"]) for shard in split["shards"]]
        missing = [path for path in paths if not Path(path).is_file()]
        if missing:
            raise CnnkitError(f"shard {missing[0]} is missing; write the shards again with 'cnnkit shard'")
        splits[name] = ShardedImageList(split["sources"], split["labels"], shards=paths, stream=name == "train")
    note = f"streamed from WebDataset shards {folder} (content sha256 {manifest['content_sha256'][:16]})"
    return DatasetSplits(
        folder.name, str(folder), manifest["classes"], splits["train"], splits["val"], splits.get("test"),
        layout=manifest["layout"], notes=[note],
    )  # fmt: skip


def _samples(shards: list[str]) -> Iterator[tuple[bytes, int]]:
    """(encoded image, label) of every sample of ``shards``, in order, read by WebDataset."""
    from webdataset.tariterators import tarfile_samples

    for sample in tarfile_samples([{"url": shard} for shard in shards]):
        image = next(value for key, value in sample.items() if not key.startswith("__") and key != "cls")
        yield image, int(sample["cls"])


def decode_shards(
    split: ShardedImageList, preprocessing: Preprocessing, for_training: bool, max_pixels: int,
    progress: str | None = None,
) -> torch.Tensor:  # fmt: skip
    """Every image of a (validation or test) split, prepared, as one uint8 tensor; ``progress`` names the
    step shown while it runs."""
    samples = _samples(split.shards)
    if progress is not None:
        samples = tracked(samples, len(split.labels), progress, unit="images")
    return torch.stack([_prepared(data, preprocessing, for_training, max_pixels) for data, _ in samples])


def _prepared(data: bytes, preprocessing: Preprocessing, for_training: bool, max_pixels: int) -> torch.Tensor:
    return prepare_decoded(decode_bytes(data, preprocessing.channels, max_pixels), preprocessing, for_training)


class ShardStream(IterableDataset):
    """(transformed image, label) pairs of a streamed split, a new seeded order each epoch.

    Each epoch draws one number from ``generator`` (saved in the run's checkpoint, so a resumed
    run goes on with the next epoch's order): it orders the shards and seeds the shuffle buffer.
    Every rank reads the same global order and keeps every ``world``-th sample from ``rank``,
    ``len(self)`` of them (up to ``world - 1`` samples of an epoch are left out, different ones each
    epoch); only those are decoded.
    """

    def __init__(
        self, split: ShardedImageList, preprocessing: Preprocessing, for_training: bool, transform: Any,
        seed: int, max_pixels: int, buffer: int = SHUFFLE_BUFFER,
    ) -> None:  # fmt: skip
        self.split, self.preprocessing, self.for_training, self.transform = (
            split,
            preprocessing,
            for_training,
            transform,
        )
        self.max_pixels, self.buffer = max_pixels, buffer
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world = 0, 1

    def share(self, rank: int, world: int) -> None:
        """Keep only this rank's share of each epoch (set before iterating)."""
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.split) // self.world

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        from webdataset.filters import shuffle

        rng = random.Random(int(torch.randint(2**62, (1,), generator=self.generator)))
        shards = list(self.split.shards)
        rng.shuffle(shards)
        mixed = shuffle(self.buffer, min(self.buffer, 256), rng=rng)(_samples(shards))
        for data, label in itertools.islice(mixed, self.rank, len(self) * self.world, self.world):
            image = _prepared(data, self.preprocessing, self.for_training, self.max_pixels)
            yield self.transform(image), label


class ShardImages:
    """The pixels of a streamed split: no random access, only :meth:`stream` (in place of a uint8 tensor)."""

    def __init__(
        self, split: ShardedImageList, preprocessing: Preprocessing, for_training: bool, max_pixels: int, shape: tuple
    ) -> None:
        self.split, self.preprocessing, self.for_training, self.max_pixels = (
            split,
            preprocessing,
            for_training,
            max_pixels,
        )
        self.shape = (len(split), *shape)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: Any) -> torch.Tensor:
        raise CnnkitError("shards are read in order, not by index; train from them with --sampler shuffle")

    def stream(self, transform: Any, seed: int) -> ShardStream:
        return ShardStream(self.split, self.preprocessing, self.for_training, transform, seed, self.max_pixels)
