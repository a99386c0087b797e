"""The exported network and its input contract, shared by every format.

An exported model ends in softmax (apps want probabilities, not logits), divides the logits by
the run's calibrated temperature first (so it agrees with ``cnnkit predict --run``), and takes one
of three inputs:

* ``normalized``: float32 (N, C, H, W), already scaled to [0, 1] and normalized with mean/std;
* ``raw``: uint8 (N, H, W, C) pixels, resized and cropped to the input size; scaling,
  normalization and the NHWC -> NCHW transpose run inside the graph;
* ``unit``: float32 (N, C, H, W) in [0, 1]; the graph normalizes per channel. Core ML uses this
  when the std differs by channel, because its ImageType has one scale for all channels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.transforms import eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.models.config import Preprocessing
from cnnkit.predictor import load_images
from cnnkit.runtime import inference_batch_size
from cnnkit.tta import averaged_views, check_tta

INPUT_KINDS = ("normalized", "raw", "unit")


class ExportedClassifier(nn.Module):
    """A classifier with softmax, temperature and, for ``raw``/``unit`` input, its normalization built in.

    Scaling multiplies by 1/255 as torchvision's ``ToDtype`` does, so results match PyTorch to the last bit or two.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, input_kind: str, temperature: float) -> None:
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, not {input_kind!r}")
        self.model = model
        self.input_kind = input_kind
        self.temperature = temperature
        shape = (1, preprocessing.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(preprocessing.mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(preprocessing.std, dtype=torch.float32).view(shape))

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Probabilities; for a localization model (probabilities, boxes as corners in [0, 1] of the image)."""
        if self.input_kind == "raw":
            image = image.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        if self.input_kind != "normalized":
            image = (image - self.mean) / self.std
        outputs = self.model(image)
        if isinstance(outputs, tuple):
            logits, boxes = outputs
            return (logits / self.temperature).softmax(1), boxes
        return (outputs / self.temperature).softmax(1)


def model_input(images: torch.Tensor, preprocessing: Preprocessing, input_kind: str) -> torch.Tensor:
    """Prepared uint8 images (N, C, H, W) -> the tensor an exported model with ``input_kind`` takes."""
    if input_kind == "raw":
        return images.permute(0, 2, 3, 1).contiguous()
    if input_kind == "unit":
        return images.float() * (1.0 / 255.0)
    return eval_transform(preprocessing)(images)


def example_input(preprocessing: Preprocessing, input_kind: str, batch: int = 2) -> torch.Tensor:
    """A random input for tracing; batch 2 so that exporters do not specialize the batch to 1."""
    size, channels = preprocessing.input_size, preprocessing.channels
    pixels = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)
    return model_input(pixels, preprocessing, input_kind)


def renormalized(probabilities: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums, in float64 then back to float32, so each sums to 1 within 1e-6.

    An int8 model's output may be quantized after its softmax (files from elsewhere, or older cnnkit
    exports), which leaves rows summing to 0.98 or 1.02; the division puts that right without changing
    any ranking.
    """
    as_double = probabilities.double()
    return (as_double / as_double.sum(1, keepdim=True).clamp_min(1e-12)).float()


@dataclass
class ExportedPredictor(ABC):
    """Runs an exported model on prepared uint8 images, like :class:`cnnkit.predictor.Predictor` does for PyTorch."""

    classes: list[str]
    preprocessing: Preprocessing
    input_kind: str

    @abstractmethod
    def run_outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's outputs for one batch already in its input format: (probabilities,) or (probabilities, boxes)."""

    def run_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, classes) for one batch already in the model's input format."""
        return self.run_outputs(inputs)[0]

    @property
    @abstractmethod
    def localizes(self) -> bool:
        """Whether the model also outputs a box per image (an exported localization run)."""

    def probabilities(self, images: torch.Tensor, batch_size: int | None = None, tta: str = "none") -> torch.Tensor:
        """Class probabilities for prepared uint8 images (N, C, H, W), averaged over ``tta``'s views."""
        return self._outputs(images, batch_size, tta)[0]

    def localize(
        self, images: torch.Tensor, batch_size: int | None = None, tta: str = "none"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, boxes (N, 4) as corners in [0, 1] of the image), as :meth:`Predictor.localize`."""
        if not self.localizes:
            raise CnnkitError("this exported model predicts classes only; export a localization run for boxes")
        return self._outputs(images, batch_size, tta)  # type: ignore[return-value]

    def _outputs(
        self, images: torch.Tensor, batch_size: int | None, tta: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_tta(tta)
        batch_size = batch_size or inference_batch_size(torch.device("cpu"))  # exported engines run on the CPU here
        probabilities, boxes = [torch.empty(0, len(self.classes))], [torch.empty(0, 4)]
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            probs, box = averaged_views(self._probabilities_and_boxes, batch, tta)
            probabilities.append(renormalized(probs))
            if box is not None:
                boxes.append(box)
        return torch.cat(probabilities), torch.cat(boxes) if self.localizes else None

    def _probabilities_and_boxes(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One prepared uint8 batch through the engine: (probabilities, boxes or None)."""
        probs, *box = self.run_outputs(model_input(batch, self.preprocessing, self.input_kind))
        return probs, box[0] if box else None

    def load_images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        return load_images(paths, self.preprocessing)
