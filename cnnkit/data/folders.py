"""Find the images of a dataset and split them into train / validation / test.

Two layouts are understood:

* split folders: ``DIR/train/<class>/*``, ``DIR/val|valid|validation/<class>/*``, ``DIR/test/<class>/*``
  (validation is carved out of train when absent; test is optional);
* flat: ``DIR/<class>/*``, split stratified and seeded (70/15/15 by default).

Class names are the sorted folder names; index ``i`` in every label is ``classes[i]``. Hidden
files and folders (names starting with ``.``: ``.DS_Store``, ``.ipynb_checkpoints/``) are never
images of a class and are left out everywhere, counted in the notes. The first bytes of every
other file are checked: files that do not start like a supported image (``Thumbs.db``, text,
empty files) are left out of the splits and kept in ``ImageList.skipped`` with the reason, so
that one warning can name them with those decoding drops later. A class with no such file is an
error, or is dropped with ``drop_empty_classes``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from cnnkit.data.decode import DEFAULT_MAX_PIXELS, UndecodableImage, check_signature
from cnnkit.errors import CnnkitError, reject_url

SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


class ScanOptions(TypedDict, total=False):
    """The keyword options of :func:`scan_folder`, passed on by ``load_dataset``."""

    max_pixels: int
    drop_empty_classes: bool
    without_test: bool


@dataclass
class ImageList:
    """One split: where each image comes from and its class index.

    ``sources`` are file paths, or ``builtin:NAME/INDEX`` for built-in data whose pixels are in
    ``arrays`` (uint8, H x W or H x W x C). ``skipped`` maps files found for this split but left
    out (not readable images) to the reason; a subset has none.
    """

    sources: list[str]
    labels: list[int]
    arrays: list[np.ndarray] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices: list[int] | np.ndarray) -> ImageList:
        arrays = [self.arrays[i] for i in indices] if self.arrays is not None else None
        return ImageList([self.sources[i] for i in indices], [self.labels[i] for i in indices], arrays)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=num_classes).tolist()


@dataclass
class DatasetSplits:
    """A dataset ready for training: class names and the three splits (``test`` may be absent).

    ``skipped`` names the files the scan left out of the splits; ``max_pixels`` is the pixel
    budget decoding applies (:func:`~cnnkit.data.datasets.decode_splits` reads it from here).
    """

    name: str
    root: str
    classes: list[str]
    train: ImageList
    val: ImageList
    test: ImageList | None = None
    layout: str = "flat"
    notes: list[str] = field(default_factory=list)
    max_pixels: int = DEFAULT_MAX_PIXELS  # the budget the scan used; decoding uses it too

    @property
    def skipped(self) -> dict[str, str]:
        """Every file of every split left out at scan time, with the reason."""
        splits = [split for split in (self.train, self.val, self.test) if split is not None]
        return {path: why for split in splits for path, why in split.skipped.items()}

    def split(self, name: str) -> ImageList:
        """``train``, ``val`` (or ``valid``, ``validation``), ``test``, or ``all``: every split together."""
        name = canonical_split(name)
        if name == "all":
            return join_image_lists([s for s in (self.train, self.val, self.test) if s is not None])
        chosen = getattr(self, name)
        if chosen is None:
            raise CnnkitError(f"dataset {self.name} has no {name} split; use --split val, or --split all")
        return chosen


SPLIT_CHOICES = "train, val (or valid, validation), test or all"


def canonical_split(name: str) -> str:
    """The split a user's name means: ``validation`` and ``valid`` are ``val``; ``all`` is every image."""
    lowered = name.strip().lower()
    for canonical, names in {**SPLIT_NAMES, "all": ("all",)}.items():
        if lowered in names:
            return canonical
    raise CnnkitError(f"--split must be {SPLIT_CHOICES}, not {name!r}")


def join_image_lists(lists: list[ImageList]) -> ImageList:
    """One list of every image of ``lists``, in order (the pixels of built-in data included)."""
    with_arrays = all(part.arrays is not None for part in lists)
    return ImageList(
        [source for part in lists for source in part.sources],
        [label for part in lists for label in part.labels],
        [array for part in lists for array in part.arrays] if with_arrays else None,  # type: ignore[union-attr]
        {path: why for part in lists for path, why in part.skipped.items()},
    )


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def visible_files(folder: Path) -> tuple[list[Path], int]:
    """Every file under ``folder``, recursively and sorted, without hidden files or folders.

    Returns the files and how many hidden entries were left out (a hidden folder counts once and
    is not entered). Symlinked folders are not followed, as ``Path.rglob`` does not follow them.
    """
    files: list[Path] = []
    hidden = 0
    for parent, folders, names in os.walk(folder):
        hidden += sum(map(_is_hidden, folders)) + sum(map(_is_hidden, names))
        folders[:] = [name for name in folders if not _is_hidden(name)]
        files.extend(Path(parent, name) for name in names if not _is_hidden(name))
    return sorted(files), hidden


def _class_folders(folder: Path) -> tuple[list[Path], int]:
    """The visible sub-folders of ``folder`` (the classes) and how many hidden entries it holds."""
    children = list(folder.iterdir())
    hidden = sum(_is_hidden(child.name) for child in children)
    return sorted(p for p in children if p.is_dir() and not _is_hidden(p.name)), hidden


@dataclass
class _FolderScan:
    """One folder of class sub-folders: per class, the files that start like images and the others (with why)."""

    folder: Path
    images: dict[str, list[str]]
    not_images: dict[str, dict[str, str]]
    hidden: int

    def image_list(self, classes: list[str]) -> ImageList:
        sources = [source for name in classes for source in self.images.get(name, [])]
        labels = [index for index, name in enumerate(classes) for _ in self.images.get(name, [])]
        skipped = {path: why for name in classes for path, why in self.not_images.get(name, {}).items()}
        return ImageList(sources, labels, skipped=skipped)


def _scan_classes(folder: Path, classes: list[str]) -> _FolderScan:
    """Check the first bytes of every visible file in ``folder/<class>``; a missing class folder holds nothing."""
    scan = _FolderScan(folder, {}, {}, _class_folders(folder)[1])
    for name in classes:
        class_dir = folder / name
        files, hidden = visible_files(class_dir) if class_dir.is_dir() else ([], 0)
        scan.hidden += hidden
        scan.images[name], scan.not_images[name] = [], {}
        for file in files:
            try:
                check_signature(file)
            except UndecodableImage as exc:
                scan.not_images[name][str(file)] = str(exc)
            else:
                scan.images[name].append(str(file))
    return scan


def _settle_empty_classes(scan: _FolderScan, classes: list[str], drop: bool) -> tuple[list[str], list[str]]:
    """The classes with at least one image file, and a note per dropped class; or the error naming the others."""
    problems = {}
    for name in classes:
        if not scan.images[name]:
            unreadable = scan.not_images[name]
            problems[name] = f"none of its {len(unreadable)} files is a readable image" if unreadable else "empty"
    if problems and not drop:
        listed = "; ".join(f"class {name!r} ({scan.folder / name}): {why}" for name, why in problems.items())
        raise CnnkitError(
            f"{listed}; add images or delete the folder, or drop classes with no images (--drop-empty-classes)"
        )
    notes = [f"dropped class {name!r} ({scan.folder / name}): {why}" for name, why in problems.items()]
    return [name for name in classes if name not in problems], notes


def expand_image_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The files to predict on: a folder becomes its files (recursively, sorted, hidden ones left out).

    Other paths are kept as given, even missing ones, so that each can be answered on its own.
    """
    expanded: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            expanded.append(path)
            continue
        files, _ = visible_files(path)
        if not files:
            raise CnnkitError(f"folder {path} holds no files to predict on; give image files or a folder of them")
        expanded.extend(files)
    return expanded


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
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name)}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if name in children:
                found[split] = children[name]
                break
    return found


def scan_folder(
    root: str | Path,
    val_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    drop_empty_classes: bool = False,
    without_test: bool = False,
) -> DatasetSplits:
    """Discover a class-per-folder dataset in either layout, check every file's first bytes and split it.

    ``max_pixels`` is the pixel budget that decoding the dataset will apply (files whose header
    claims more are skipped then). A class whose folder holds no image file is an error naming
    it, unless ``drop_empty_classes``, which leaves it out of the classes and says so in the notes.
    ``without_test`` leaves the test split out: a test folder is not opened, and a flat folder's
    test share is set aside as usual (so train and validation stay the same) but not returned.
    """
    reject_url(root, "data")
    root = Path(root).expanduser()
    if root.is_file():
        raise CnnkitError(
            f"data {root} is a file; training needs a folder of class folders (DATA/CLASS/IMAGE), "
            "or a built-in dataset name"
        )
    if not root.is_dir():
        raise CnnkitError(
            f"data folder {root} does not exist; give a folder of class sub-folders or a built-in dataset name"
        )
    _check_fractions(val_split, test_split)
    splits = find_split_folders(root)
    if without_test:
        splits.pop("test", None)
    if "train" in splits:
        result = _scan_split_folders(root, splits, val_split, seed, drop_empty_classes)
    else:
        result = _scan_flat_folder(root, val_split, test_split, seed, drop_empty_classes)
    result.max_pixels = max_pixels
    if without_test:
        result.test = None
    for split in ("train", "val", "test"):
        images = getattr(result, split)
        if images is not None and len(images) == 0:
            unreadable = f" ({len(images.skipped)} unreadable files left out)" if images.skipped else ""
            raise CnnkitError(
                f"the {split} split of {root} has no images{unreadable}; put image files in its class folders"
            )
    return result


def scan_whole_folder(
    root: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, drop_empty_classes: bool = False
) -> DatasetSplits:
    """A flat folder of class sub-folders kept whole, for scoring a model on it: every image is in ``all``.

    Its ``train`` list holds every image and ``val`` none; ``layout`` is ``whole``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CnnkitError(f"data folder {root} does not exist; give a folder of class sub-folders")
    found = [p.name for p in _class_folders(root)[0]]
    _require_classes(found, root)
    scan = _scan_classes(root, found)
    classes, notes = _settle_empty_classes(scan, found, drop_empty_classes)
    everything = scan.image_list(classes)
    notes = [f"whole folder, {len(everything)} images, not split", *notes, *_hidden_note(scan.hidden)]
    whole = DatasetSplits(root.name, str(root), classes, everything, ImageList([], []), None, "whole", notes)
    whole.max_pixels = max_pixels
    return whole


def _scan_flat_folder(root: Path, val_split: float, test_split: float, seed: int, drop_empty: bool) -> DatasetSplits:
    """``root/<class>/*``: every class split stratified and seeded; unreadable files go with train."""
    found = [p.name for p in _class_folders(root)[0]]
    _require_classes(found, root)
    scan = _scan_classes(root, found)
    classes, notes = _settle_empty_classes(scan, found, drop_empty)
    _require_classes(classes, root)
    everything = scan.image_list(classes)
    train, val, test = stratified_split(everything, (val_split, test_split), seed)
    train.skipped = everything.skipped
    share = f"{1 - val_split - test_split:.0%}/{val_split:.0%}/{test_split:.0%}"
    notes = [f"flat folder split {share}, seed {seed}", *notes, *_hidden_note(scan.hidden)]
    test_or_none = test if test_split > 0 else None
    return DatasetSplits(root.name, str(root), classes, train, val, test_or_none, layout="flat", notes=notes)


def _scan_split_folders(
    root: Path, splits: dict[str, Path], val_split: float, seed: int, drop_empty: bool
) -> DatasetSplits:
    """``root/train/<class>/*`` and friends; the classes are train's, validation is carved when absent."""
    found = [p.name for p in _class_folders(splits["train"])[0]]
    _require_classes(found, splits["train"])
    for split in ("val", "test"):
        if split in splits:
            extra = sorted({p.name for p in _class_folders(splits[split])[0]} - set(found))
            if extra:
                raise CnnkitError(f"{splits[split]} has class folders missing from train: {', '.join(extra)}")
    train_scan = _scan_classes(splits["train"], found)
    classes, notes = _settle_empty_classes(train_scan, found, drop_empty)
    _require_classes(classes, splits["train"])
    scans = {"train": train_scan}
    scans |= {split: _scan_classes(splits[split], classes) for split in ("val", "test") if split in splits}
    lists = {split: scan.image_list(classes) for split, scan in scans.items()}
    if "val" not in lists:
        train, lists["val"], _ = stratified_split(lists["train"], (val_split, 0.0), seed)
        train.skipped, lists["train"] = lists["train"].skipped, train
        notes.insert(0, f"no validation folder: {val_split:.0%} of train held out, seed {seed}")
    notes += _hidden_note(sum(scan.hidden for scan in scans.values()))
    return DatasetSplits(
        root.name, str(root), classes, lists["train"], lists["val"], lists.get("test"), layout="split-folders",
        notes=notes,
    )  # fmt: skip


def _hidden_note(hidden: int) -> list[str]:
    return [f"left out {hidden} hidden file(s) or folder(s) (names starting with '.')"] if hidden else []


def _require_classes(classes: list[str], folder: Path) -> None:
    if len(classes) < 2:
        found = f" (found only {classes[0]!r})" if classes else ""
        raise CnnkitError(f"{folder} needs at least 2 class folders{found}: arrange images as {folder}/<class>/<image>")
