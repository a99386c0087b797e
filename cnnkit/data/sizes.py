"""How large a dataset's images are, read from file headers without decoding them.

The input size a run trains at is chosen from this survey (:mod:`cnnkit.train.input_size`): a
32 px image upsampled to 224 px carries no more detail and costs about 50 times the compute.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnnkit.data.folders import ImageList

SURVEY_SAMPLE = 256  # files whose headers are read; evenly spaced over the split, so the choice is deterministic


@dataclass(frozen=True)
class SizeSurvey:
    """Median sides of the sampled images, in pixels, and how many headers were read."""

    short_side: int
    long_side: int
    sampled: int


def image_side_lengths(images: ImageList, index: int) -> tuple[int, int] | None:
    """(short, long) side of one image from its header (or its array), or None when unreadable."""
    if images.arrays is not None:
        height, width = np.asarray(images.arrays[index]).shape[:2]
    else:
        try:
            with Image.open(images.sources[index]) as image:  # reads the header only
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            return None  # decoding reports it with the reason; a survey just leaves it out
    return min(width, height), max(width, height)


def survey_sizes(images: ImageList, sample: int = SURVEY_SAMPLE) -> SizeSurvey | None:
    """The median image size of a split from at most ``sample`` headers; None for an unreadable split."""
    if not len(images):
        return None
    picks = np.unique(np.linspace(0, len(images) - 1, num=min(sample, len(images))).round().astype(int))
    sides = [side for side in (image_side_lengths(images, int(i)) for i in picks) if side is not None]
    if not sides:
        return None
    return SizeSurvey(
        short_side=int(statistics.median(s for s, _ in sides)),
        long_side=int(statistics.median(long for _, long in sides)),
        sampled=len(sides),
    )
