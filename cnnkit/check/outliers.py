"""Images worth a look: those that resemble no class of the dataset, and blank or very dark ones.

"Resembles no class" is measured in embedding space: an image's affinity to a class is its mean
cosine similarity to its nearest few images of that class, and its best affinity over all classes
is compared with everyone else's by a robust z-score (median and MAD) of ``log(1 - affinity)``, so
the threshold adapts to how tight the dataset's classes are (the logarithm spreads out the crowded
top end). A placeholder picture, a screenshot among photos or a photo of the wrong subject lands
far below the rest: on hymenoptera only ``imageNotFound.gif`` passes the threshold, on flowers128 nothing.
"""

from __future__ import annotations

import numpy as np

from cnnkit.check.findings import Outlier
from cnnkit.check.inventory import FileFacts

NEIGHBOURS = 5
OUTLIER_Z = -3.5  # robust z-score at or below which an image is reported
BLANK_LUMA_STD = 6.0  # grey levels (0-255): an image this flat shows nothing
DARK_MEAN_LUMA = 20.0
BLOCK_ROWS = 512


def class_affinity(unit_embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, classes): mean cosine similarity to the nearest :data:`NEIGHBOURS` other images of each class."""
    affinity = np.full((len(labels), num_classes), -1.0, dtype=np.float32)
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    for start in range(0, len(labels), BLOCK_ROWS):
        rows = np.arange(start, min(start + BLOCK_ROWS, len(labels)))
        similarity = unit_embeddings[rows] @ unit_embeddings.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # an image is not its own neighbour
        for c, columns in enumerate(members):
            k = min(NEIGHBOURS, len(columns) - 1)
            if k < 1:
                continue
            nearest = -np.partition(-similarity[:, columns], k - 1, axis=1)[:, :k]
            affinity[rows, c] = np.where(np.isfinite(nearest), nearest, -1.0).mean(axis=1)
    return affinity


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 MAD): a z-score that a few extreme values cannot distort."""
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    return (values - median) / max(float(spread), 1e-6)


def embedding_outliers(facts: list[FileFacts], unit_embeddings: np.ndarray, classes: list[str]) -> list[Outlier]:
    """Readable images whose best class affinity is an extreme low (``unit_embeddings``: a row per readable file)."""
    readable = [fact for fact in facts if fact.readable]
    if len(readable) <= NEIGHBOURS:
        return []
    index_of = {name: i for i, name in enumerate(classes)}
    labels = np.array([index_of[fact.ref.label] for fact in readable])
    best = class_affinity(unit_embeddings, labels, len(classes)).max(axis=1)
    z = robust_z(-np.log(np.maximum(1.0 - best, 1e-6)))
    flagged = np.flatnonzero(z <= OUTLIER_Z)
    return [
        Outlier(readable[i].ref, "far from every class", round(float(z[i]), 2)) for i in flagged[np.argsort(z[flagged])]
    ]


def pixel_outliers(facts: list[FileFacts]) -> list[Outlier]:
    """Near-blank images (almost no contrast) and very dark ones; ``score`` is the luma spread or mean."""
    found: list[Outlier] = []
    for fact in facts:
        if not fact.readable or fact.phash is None:
            continue
        if fact.luma_std < BLANK_LUMA_STD:
            found.append(Outlier(fact.ref, "near-blank", round(fact.luma_std, 2)))
        elif fact.mean_luma < DARK_MEAN_LUMA:
            found.append(Outlier(fact.ref, "very dark", round(fact.mean_luma, 2)))
    return found
