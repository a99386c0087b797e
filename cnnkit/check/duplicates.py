"""The same picture twice: exact copies (equal decoded pixels) and near copies (resized, recompressed,
slightly cropped or recoloured, or mirrored).

Near copies are found in two steps. Perceptual hashes (64-bit DCT hashes from ``imagehash``) of
every pair are compared first; they survive resizing, JPEG and brightness changes almost unchanged
(0-4 bits) but a 5% crop moves them by up to 18 bits, where unrelated photos of similar scenes
start to appear. So a candidate is confirmed by the cosine similarity of pretrained embeddings,
and the further apart its hashes are, the higher that similarity must be (:class:`NearCopyRule`).
Comparing one image's hash with the other's *mirrored* hash finds horizontal flips, which are
reported as their own kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cnnkit.check.findings import DuplicateGroup, ImageRef
from cnnkit.check.inventory import FileFacts

DEFAULT_SIMILARITY = 0.92
HASH_BITS = 64
BLOCK_ROWS = 512  # hash comparisons run this many rows at a time, so memory stays O(rows x images)


@dataclass(frozen=True)
class NearCopyRule:
    """The cosine similarity a pair needs, given how many hash bits differ.

    ``similarity`` applies up to :attr:`max_distance` bits; closer hashes need less (0.12 less up to
    8 bits, 0.05 less up to 12), because there the hashes already say the layouts match and the
    embeddings only have to rule out a coincidence. Measured on copies of hymenoptera and
    flowers128 photos and on all pairs of both sets (see the check benchmark).
    """

    similarity: float = DEFAULT_SIMILARITY
    max_distance: int = 18

    def required(self, distance: np.ndarray) -> np.ndarray:
        needed = np.full(distance.shape, np.inf)
        for bits, relief in ((self.max_distance, 0.0), (12, 0.05), (8, 0.12)):
            needed[distance <= bits] = self.similarity - relief
        return needed


@dataclass(frozen=True)
class LinkedPair:
    """Two distinct pictures judged to be copies of each other (indices into the compared images)."""

    first: int
    second: int
    kind: str  # near or flip
    distance: int
    similarity: float


def group_by_pixels(facts: list[FileFacts]) -> dict[str, list[int]]:
    """Readable files by the digest of their pixels, in file order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, fact in enumerate(facts):
        if fact.readable:
            groups[fact.digest].append(index)
    return dict(groups)


def exact_groups(facts: list[FileFacts]) -> list[DuplicateGroup]:
    """Every set of two or more files with identical decoded pixels."""
    return [
        DuplicateGroup("exact", [facts[i].ref for i in members])
        for members in group_by_pixels(facts).values()
        if len(members) > 1
    ]


def _hash_signs(bits: np.ndarray) -> np.ndarray:
    """Hash bits as +1/-1, so that a matrix product counts agreeing minus disagreeing bits."""
    return bits.astype(np.float32) * 2 - 1


def candidate_pairs(
    phashes: np.ndarray, mirrored: np.ndarray, max_distance: int
) -> Iterator[tuple[int, int, int, int]]:
    """(i, j, bits apart, bits apart from j's mirror image) for every pair i < j within ``max_distance`` either way."""
    signs, mirror_signs = _hash_signs(phashes), _hash_signs(mirrored)
    count = len(signs)
    for start in range(0, count, BLOCK_ROWS):
        block = signs[start : start + BLOCK_ROWS]
        direct = np.rint((HASH_BITS - block @ signs.T) / 2).astype(np.int32)
        flipped = np.rint((HASH_BITS - block @ mirror_signs.T) / 2).astype(np.int32)
        later = np.arange(count)[None, :] > (start + np.arange(len(block)))[:, None]
        rows, cols = np.nonzero(later & (np.minimum(direct, flipped) <= max_distance))
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            yield start + row, col, int(direct[row, col]), int(flipped[row, col])


def link_near_copies(
    phashes: np.ndarray, mirrored: np.ndarray, unit_embeddings: np.ndarray, rule: NearCopyRule
) -> list[LinkedPair]:
    """Candidate pairs by hash, kept when their embeddings agree as closely as :class:`NearCopyRule` asks."""
    candidates = np.array(list(candidate_pairs(phashes, mirrored, rule.max_distance)), dtype=np.int64).reshape(-1, 4)
    first, second, direct, flipped = candidates.T
    similarity = np.einsum("ij,ij->i", unit_embeddings[first], unit_embeddings[second])
    is_flip = flipped < direct
    distance = np.where(is_flip, flipped, direct)
    keep = similarity >= rule.required(distance)
    return [
        LinkedPair(int(a), int(b), "flip" if f else "near", int(d), round(float(s), 4))
        for a, b, f, d, s in zip(
            first[keep], second[keep], is_flip[keep], distance[keep], similarity[keep], strict=True
        )
    ]


def connected_components(count: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Groups of nodes joined by ``edges`` (union-find), each sorted, only those with two or more nodes."""
    parent = list(range(count))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = defaultdict(list)
    for node in range(count):
        members[root(node)].append(node)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda group: group[0])


def near_groups(pairs: list[LinkedPair], copies: list[list[ImageRef]]) -> list[DuplicateGroup]:
    """One group per kind and connected set of pictures; ``copies[i]`` are the files showing picture ``i``."""
    groups: list[DuplicateGroup] = []
    for kind in ("near", "flip"):
        linked = [pair for pair in pairs if pair.kind == kind]
        for component in connected_components(len(copies), [(p.first, p.second) for p in linked]):
            inside = set(component)
            own = [p for p in linked if p.first in inside]
            groups.append(
                DuplicateGroup(
                    kind,  # type: ignore[arg-type]
                    [ref for picture in component for ref in copies[picture]],
                    similarity=min(p.similarity for p in own),
                    hash_distance=max(p.distance for p in own),
                )
            )
    return groups


def find_duplicates(
    facts: list[FileFacts], embeddings: np.ndarray | None, rule: NearCopyRule | None = None
) -> list[DuplicateGroup]:
    """Exact groups, then near and flip groups among distinct pictures; ``embeddings`` (unit rows, one per
    readable file in order) may be None for exact copies only."""
    by_pixels = group_by_pixels(facts)
    groups = exact_groups(facts)
    if embeddings is not None and by_pixels:
        row_of = {index: row for row, index in enumerate(i for i, fact in enumerate(facts) if fact.readable)}
        pictures = list(by_pixels.values())  # one entry per distinct picture, its files in order
        first = [members[0] for members in pictures]
        pairs = link_near_copies(
            np.stack([facts[i].phash for i in first]),
            np.stack([facts[i].mirrored_phash for i in first]),
            embeddings[[row_of[i] for i in first]],
            rule or NearCopyRule(),
        )
        groups += near_groups(pairs, [[facts[i].ref for i in members] for members in pictures])
    return sort_groups(groups)


def sort_groups(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """Most serious first: conflicting labels, then leaks across splits, then copies within a class."""
    return sorted(groups, key=lambda g: (not g.conflicting_labels, not g.crosses_splits, g.images[0].path))
