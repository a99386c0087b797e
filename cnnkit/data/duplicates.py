"""The same file in two splits or under two classes: the duplicate check cheap enough for every training run.

A picture that sits in train and in val or test lets evaluation score images the model trained on;
one filed under two classes has a wrong label. Both show up from the files' bytes alone, and only
files that share their size with another one are read at all: flowers128's 4,317 files take 0.2-0.7 s,
against 4.5 s to decode them. So training runs this on every start (:func:`screen_duplicates`).
``cnnkit check`` (:mod:`cnnkit.check`) also finds the same pixels saved another way, and near copies.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace

from cnnkit.data.folders import DatasetSplits
from cnnkit.errors import CnnkitError

SPLIT_ORDER = ("train", "val", "test")


class DuplicateFilesWarning(UserWarning):
    """The same file is in two splits, or under two classes."""


@dataclass(frozen=True)
class ImageRef:
    """One file of the dataset: where it is, the class its folder gives it, and its split."""

    path: str
    label: str
    split: str


def dataset_files(splits: DatasetSplits) -> list[ImageRef]:
    """Every file of every split, train first: the order all of ``cnnkit.check`` indexes images by."""
    refs: list[ImageRef] = []
    for split in SPLIT_ORDER:
        images = getattr(splits, split)
        if images is None:
            continue
        if images.arrays is not None:
            raise CnnkitError(
                f"{splits.name} is a built-in dataset held in memory; cnnkit check reads image folders (DIR/<class>/*)"
            )
        refs.extend(
            ImageRef(source, splits.classes[label], split)
            for source, label in zip(images.sources, images.labels, strict=True)
        )
    return refs


def identical_files(refs: list[ImageRef]) -> list[list[ImageRef]]:
    """Every set of two or more files with the same bytes, in file order; a file that cannot be read is in none."""
    by_size: dict[int, list[ImageRef]] = defaultdict(list)
    for ref in refs:
        try:
            by_size[os.stat(ref.path).st_size].append(ref)
        except OSError:
            continue
    by_digest: dict[str, list[ImageRef]] = defaultdict(list)
    for same_size in (group for group in by_size.values() if len(group) > 1):
        for ref in same_size:
            try:
                with open(ref.path, "rb") as file:
                    by_digest[hashlib.file_digest(file, "blake2b").hexdigest()].append(ref)
            except OSError:
                continue
    order = {ref: index for index, ref in enumerate(refs)}
    return sorted((group for group in by_digest.values() if len(group) > 1), key=lambda group: order[group[0]])


def conflicting_labels(images: list[ImageRef]) -> bool:
    """The same picture under two or more classes: at least one label is wrong."""
    return len({image.label for image in images}) > 1


def crosses_splits(images: list[ImageRef]) -> bool:
    """The same picture in two splits: evaluation scores it on an image it trained on."""
    return len({image.split for image in images}) > 1


def duplicates_line(groups: list[list[ImageRef]], root: str) -> str | None:
    """One line on the groups that cross classes or splits (None when none does), naming the command that shows them."""
    serious = [group for group in groups if conflicting_labels(group) or crosses_splits(group)]
    if not serious:
        return None
    files = sum(len(group) for group in serious)
    conflicts, leaks = sum(map(conflicting_labels, serious)), sum(map(crosses_splits, serious))
    return (
        f"{len(serious)} group(s) of duplicate images ({files} files): {conflicts} under two or more classes, "
        f"{leaks} shared between splits; see them with: cnnkit check {root}"
    )


def drop_copies(splits: DatasetSplits, groups: list[list[ImageRef]]) -> tuple[DatasetSplits, list[ImageRef]]:
    """``splits`` without the val and test files whose picture an earlier split (train, then val) also holds.

    Membership is read from ``splits`` itself, so groups found with another seed or split still
    drop only what leaks here. Returns the new splits and the files dropped (with the split they left).
    """
    split_of = {
        source: split
        for split in SPLIT_ORDER
        if (images := getattr(splits, split)) is not None
        for source in images.sources
    }
    dropped: set[ImageRef] = set()
    for group in groups:
        present = [(SPLIT_ORDER.index(split_of[image.path]), image) for image in group if image.path in split_of]
        earliest = min((order for order, _ in present), default=0)
        dropped |= {replace(image, split=SPLIT_ORDER[order]) for order, image in present if order > earliest}
    ordered = sorted(dropped, key=lambda ref: (SPLIT_ORDER.index(ref.split), ref.path))
    gone = {ref.path for ref in ordered}
    changes = {}
    for split in ("val", "test"):
        images = getattr(splits, split)
        if images is None:
            continue
        kept = [i for i, source in enumerate(images.sources) if source not in gone]
        if not kept:
            raise CnnkitError(
                f"every {split} image of {splits.root} also appears in an earlier split; re-split the data"
            )
        changes[split] = images.subset(kept)
    note = f"dropped {len(ordered)} val/test file(s) whose picture an earlier split also holds"
    return replace(splits, **changes, notes=[*splits.notes, note] if ordered else list(splits.notes)), ordered


def screen_duplicates(splits: DatasetSplits, dedupe: bool = False) -> tuple[DatasetSplits, list[ImageRef]]:
    """What training runs first: one :class:`DuplicateFilesWarning` when files repeat across classes or
    splits, and with ``dedupe`` the splits without the val/test copies (:func:`drop_copies`) and those files.

    Built-in datasets have no files and pass unchanged.
    """
    if any(images is not None and images.arrays is not None for images in (splits.train, splits.val, splits.test)):
        return splits, []
    groups = identical_files(dataset_files(splits))
    line = duplicates_line(groups, splits.root)
    if line is None:
        return splits, []
    dropped: list[ImageRef] = []
    if dedupe:
        splits, dropped = drop_copies(splits, groups)
        line += f"; --dedupe dropped {len(dropped)} val/test file(s)"
    elif any(map(crosses_splits, groups)):
        line += "; --dedupe drops the val/test copies"
    warnings.warn(line, DuplicateFilesWarning, stacklevel=3)
    return splits, dropped
