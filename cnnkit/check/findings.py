"""What ``cnnkit check`` found, as plain typed records that turn into JSON with ``to_dict()``.

Every finding names its files (path, class, split), so a script can act on the JSON and a person
can find the images; nothing here holds pixels or model state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cnnkit.data.duplicates import SPLIT_ORDER, ImageRef, conflicting_labels, crosses_splits, duplicates_line

DuplicateKind = Literal["exact", "near", "flip"]
OutlierReason = Literal["far from every class", "near-blank", "very dark"]


@dataclass(frozen=True)
class UnreadableFile:
    path: str
    reason: str


@dataclass(frozen=True)
class OversizedFile:
    """A file so large that every training run spends long decoding it only to shrink it."""

    path: str
    width: int
    height: int
    megabytes: float


@dataclass
class Imbalance:
    """Largest over smallest training class; ``advice`` names cnnkit's remedies when it matters."""

    ratio: float
    largest: str
    smallest: str
    advice: str | None


@dataclass
class Inventory:
    """Counts, sizes and colour modes: the facts to know before reading any other finding."""

    counts: dict[str, dict[str, int]]  # split -> class -> images
    sizes: list[tuple[int, int]]  # (width, height) of every readable image, in file order
    modes: dict[str, int]  # colour mode (PIL's names: RGB, L, P, RGBA, CMYK, ...) -> files
    unreadable: list[UnreadableFile]
    oversized: list[OversizedFile]
    imbalance: Imbalance

    @property
    def total(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sizes"] = size_summary(self.sizes)
        data["total"] = self.total
        return data


def size_summary(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Smallest, median and largest width and height, and how many distinct sizes there are."""
    if not sizes:
        return {"distinct": 0}
    widths = sorted(w for w, _ in sizes)
    heights = sorted(h for _, h in sizes)
    middle = len(sizes) // 2
    return {
        "distinct": len(set(sizes)),
        "width": {"min": widths[0], "median": widths[middle], "max": widths[-1]},
        "height": {"min": heights[0], "median": heights[middle], "max": heights[-1]},
    }


@dataclass
class DuplicateGroup:
    """Files that show the same picture.

    ``exact``: identical decoded pixels. ``near``: a resized, recompressed, slightly cropped or
    recoloured copy (perceptual hashes within ``hash_distance`` bits, embeddings at cosine
    ``similarity`` or more). ``flip``: the same, but one is the other's mirror image.
    """

    kind: DuplicateKind
    images: list[ImageRef]
    similarity: float = 1.0  # lowest cosine similarity between linked members
    hash_distance: int = 0  # largest perceptual-hash distance between linked members

    @property
    def classes(self) -> list[str]:
        return sorted({image.label for image in self.images})

    @property
    def splits(self) -> list[str]:
        present = {image.split for image in self.images}
        return [split for split in SPLIT_ORDER if split in present]

    @property
    def conflicting_labels(self) -> bool:
        """The same picture under two or more classes: at least one label is wrong."""
        return conflicting_labels(self.images)

    @property
    def crosses_splits(self) -> bool:
        """The same picture in train and val/test: evaluation scores it on an image it trained on."""
        return crosses_splits(self.images)

    @property
    def scope(self) -> str:
        if self.conflicting_labels and self.crosses_splits:
            return "across classes and splits"
        if self.conflicting_labels:
            return "across classes"
        return "across splits" if self.crosses_splits else "within a class"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "classes": self.classes,
            "splits": self.splits,
            "scope": self.scope,
            "conflicting_labels": self.conflicting_labels,
            "crosses_splits": self.crosses_splits,
        }


@dataclass
class LabelIssue:
    """An image whose label disagrees with what the rest of the data says it looks like.

    ``given_probability`` and ``confidence`` are out-of-fold probabilities of the given and the
    suggested label; ``rank`` 1 is the most likely mistake.
    """

    image: ImageRef
    suggested: str
    confidence: float
    given_probability: float
    rank: int


@dataclass
class Outlier:
    """An image worth a look: it resembles no class (``score`` is its robust z-score), or is blank or dark."""

    image: ImageRef
    reason: OutlierReason
    score: float


@dataclass
class CheckFindings:
    """Everything one check found. ``checks`` names the checks that ran (quick_check runs only the cheap ones)."""

    dataset: str
    root: str
    layout: str
    classes: list[str]
    checks: list[str]
    inventory: Inventory
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    label_issues: list[LabelIssue] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def conflicting_labels(self) -> list[DuplicateGroup]:
        return [group for group in self.duplicates if group.conflicting_labels]

    @property
    def leaks(self) -> list[DuplicateGroup]:
        return [group for group in self.duplicates if group.crosses_splits]

    @property
    def warning(self) -> str | None:
        """One line when the same picture sits in two classes or two splits (training prints the same one)."""
        return duplicates_line([group.images for group in self.duplicates], self.root)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "layout": self.layout,
            "classes": self.classes,
            "checks": self.checks,
            "model": self.model,
            "settings": self.settings,
            "inventory": self.inventory.to_dict(),
            "duplicates": [group.to_dict() for group in self.duplicates],
            "label_issues": [asdict(issue) for issue in self.label_issues],
            "outliers": [asdict(outlier) for outlier in self.outliers],
            "seconds": self.seconds,
            "notes": self.notes,
            "warning": self.warning,
        }
