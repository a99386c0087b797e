"""Find the images of a dataset and split them into train / validation / test.

Two layouts are understood:

* split folders: ``DIR/train/<class>/*``, ``DIR/val|valid|validation/<class>/*``, ``DIR/test/<class>/*``
  (validation is carved out of train when absent; test is optional);
* flat: ``DIR/<class>/*``, split stratified and seeded (70/15/15 by default).

Class names are the sorted folder names; index ``i`` in every label is ``classes[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError

SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


@dataclass
class ImageList:
    """One split: where each image comes from and its class index.

    ``sources`` are file paths, or ``builtin:NAME/INDEX`` for built-in data whose pixels are in
    ``arrays`` (uint8, H x W or H x W x C).
    """

    sources: list[str]
    labels: list[int]
    arrays: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices: list[int] | np.ndarray) -> ImageList:
        arrays = [self.arrays[i] for i in indices] if self.arrays is not None else None
        return ImageList([self.sources[i] for i in indices], [self.labels[i] for i in indices], arrays)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=num_classes).tolist()


@dataclass
class DatasetSplits:
    """A dataset ready for training: class names and the three splits (``test`` may be absent)."""

    name: str
    root: str
    classes: list[str]
    train: ImageList
    val: ImageList
    test: ImageList | None = None
    layout: str = "flat"
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> ImageList:
        if name not in ("train", "val", "test"):
            raise CnnkitError(f"--split must be train, val or test, not {name!r}")
        chosen = getattr(self, name)
        if chosen is None:
            raise CnnkitError(f"dataset {self.name} has no {name} split; use --split val")
        return chosen


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files_by_class(folder: Path, classes: list[str]) -> ImageList:
    sources: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for file in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            sources.append(str(file))
            labels.append(index)
    return ImageList(sources, labels)


def stratified_split(
    images: ImageList, fractions: tuple[float, float], seed: int
) -> tuple[ImageList, ImageList, ImageList]:
    """Split into (rest, val, test) with per-class proportions kept; same seed, same split."""
    from sklearn.model_selection import train_test_split

    val_fraction, test_fraction = fractions
    indices = np.arange(len(images))
    labels = np.asarray(images.labels)

    def take(pool: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        if fraction <= 0:
            return pool, pool[:0]
        try:
            kept, taken = train_test_split(pool, test_size=fraction, stratify=labels[pool], random_state=seed)
        except ValueError as exc:
            raise CnnkitError(
                f"cannot split {len(pool)} images into these fractions ({exc}); "
                "add images or lower --val-split/--test-split"
            ) from exc
        return np.sort(kept), np.sort(taken)

    rest, test = take(indices, test_fraction)
    rest, val = take(rest, val_fraction / (1 - test_fraction) if test_fraction < 1 else 0)
    return images.subset(rest), images.subset(val), images.subset(test)


def _check_fractions(val_split: float, test_split: float) -> None:
    if not (0 < val_split < 1 and 0 <= test_split < 1 and val_split + test_split < 1):
        raise CnnkitError(
            f"--val-split ({val_split}) and --test-split ({test_split}) must be fractions that leave images to train on"
        )


def find_split_folders(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if name in children:
                found[split] = children[name]
                break
    return found


def scan_folder(root: str | Path, val_split: float = 0.15, test_split: float = 0.15, seed: int = 0) -> DatasetSplits:
    """Discover a class-per-folder dataset in either layout and split it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CnnkitError(
            f"data folder {root} does not exist; give a folder of class sub-folders or a built-in dataset name"
        )
    _check_fractions(val_split, test_split)
    splits = find_split_folders(root)
    if "train" in splits:
        classes = [p.name for p in _class_folders(splits["train"])]
        _require_classes(classes, splits["train"])
        for split in ("val", "test"):
            if split in splits:
                extra = sorted({p.name for p in _class_folders(splits[split])} - set(classes))
                if extra:
                    raise CnnkitError(f"{splits[split]} has class folders missing from train: {', '.join(extra)}")
        train = _files_by_class(splits["train"], classes)
        notes = []
        if "val" in splits:
            val = _files_by_class(splits["val"], classes)
        else:
            train, val, _ = stratified_split(train, (val_split, 0.0), seed)
            notes.append(f"no validation folder: {val_split:.0%} of train held out, seed {seed}")
        test = _files_by_class(splits["test"], classes) if "test" in splits else None
        result = DatasetSplits(root.name, str(root), classes, train, val, test, layout="split-folders", notes=notes)
    else:
        classes = [p.name for p in _class_folders(root)]
        _require_classes(classes, root)
        everything = _files_by_class(root, classes)
        train, val, test = stratified_split(everything, (val_split, test_split), seed)
        result = DatasetSplits(
            root.name,
            str(root),
            classes,
            train,
            val,
            test if test_split > 0 else None,
            layout="flat",
            notes=[f"flat folder split {1 - val_split - test_split:.0%}/{val_split:.0%}/{test_split:.0%}, seed {seed}"],
        )
    for split in ("train", "val", "test"):
        images = getattr(result, split)
        if images is not None and len(images) == 0:
            raise CnnkitError(f"the {split} split of {root} has no images; put image files in its class folders")
    return result


def _require_classes(classes: list[str], folder: Path) -> None:
    if len(classes) < 2:
        found = f" (found only {classes[0]!r})" if classes else ""
        raise CnnkitError(f"{folder} needs at least 2 class folders{found}: arrange images as {folder}/<class>/<image>")
