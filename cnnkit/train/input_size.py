"""The input size a run trains at, chosen from the data when ``--image-size`` is not given.

Upsampling adds pixels but no detail: CIFAR's 32 px images at ResNet's 224 px cost about 50 times
the compute. The rules:

- ``--image-size`` always wins.
- Models built for small images (a default of 64 px or less, e.g. LeNet-5) keep their own size.
- Other from-scratch models train at the images' median short side (a multiple of 8, at least
  32 px), never above the model's default; at 64 px or less, ResNets switch to a small-input stem
  (3x3 stride-1 first convolution, no early max-pooling), recorded in the run's model options.
- Pretrained models keep their pretrained size unless the images are smaller; then they train
  at ``PRETRAINED_UPSCALE`` times the images' short side, in multiples of 32 and at least
  ``PRETRAINED_MIN`` px. Pretrained filters expect objects at ImageNet's scale, so some
  upsampling pays; the factor comes from measurement (DEVELOPERS.md, "Input size").
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

from cnnkit.data.sizes import SizeSurvey
from cnnkit.models.config import ModelInfo

SMALL_MODEL_SIZE = 64  # models whose default is this or less were designed for small images
SMALL_INPUT_STEM_MAX = 64  # at or below, from-scratch ResNets take the small-input stem
SCRATCH_MIN = 32
PRETRAINED_UPSCALE = 1.25
PRETRAINED_MIN = 128


@dataclass(frozen=True)
class InputSizeChoice:
    """The size, why it was chosen (one line for the console and the run), and the stem to use."""

    size: int
    reason: str
    small_input_stem: bool = False


def choose_input_size(
    info: ModelInfo, survey: SizeSurvey | None, pretrained: bool, given: int | None
) -> InputSizeChoice:
    default = info.preprocessing.input_size
    if given is not None:
        return _with_stem(info, InputSizeChoice(given, "given by --image-size"), pretrained)
    if survey is None:
        return InputSizeChoice(default, "the model's default (no image size could be read)")
    seen = f"images' short side {survey.short_side} px"  # the median of the sampled headers
    if pretrained:
        if survey.short_side >= default:
            return InputSizeChoice(default, f"the pretrained size; {seen}")
        size = min(default, max(PRETRAINED_MIN, _round_up(survey.short_side * PRETRAINED_UPSCALE, 32)))
        return InputSizeChoice(size, f"{seen}, x{PRETRAINED_UPSCALE} for pretrained filters")
    if default <= SMALL_MODEL_SIZE:
        return InputSizeChoice(default, f"the model's own; {seen}")
    size = min(default, max(SCRATCH_MIN, _round_up(survey.short_side, 8)))
    reason = f"{seen}, not upsampled" if size < default else f"the model's default; {seen}"
    return _with_stem(info, InputSizeChoice(size, reason), pretrained)


def uses_small_input_stem(info: ModelInfo, size: int, pretrained: bool) -> bool:
    """Whether a model built at ``size`` px takes its small-input stem (builders with a ``small_input`` option)."""
    offers = "small_input" in inspect.signature(info.builder).parameters
    return offers and not pretrained and size <= SMALL_INPUT_STEM_MAX


def _with_stem(info: ModelInfo, choice: InputSizeChoice, pretrained: bool) -> InputSizeChoice:
    if not uses_small_input_stem(info, choice.size, pretrained):
        return choice
    return InputSizeChoice(choice.size, f"{choice.reason}; small-input stem", small_input_stem=True)


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)
