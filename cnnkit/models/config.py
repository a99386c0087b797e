"""What a model expects at its input, the way timm's ``pretrained_cfg`` describes it.

The same record drives data loading, prediction, export (ONNX metadata, Core ML scale and bias)
and the run's config.yaml, so preprocessing is defined once per model and never drifts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Preprocessing:
    """Input contract of a model.

    Evaluation images are center-cropped to ``crop_pct`` of their short side (TF-style offsets),
    resized to ``input_size`` with ``interpolation``, scaled to [0, 1] and normalized with
    ``mean``/``std`` (given in [0, 1] units). ``resize="squash"`` (localization runs) resizes the
    whole image to the square instead, so no part of an object's box is cropped away.
    """

    input_size: int = 224
    channels: int = 3
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    resize: str = "crop"

    def with_size(self, input_size: int | None) -> Preprocessing:
        return self if input_size is None else replace(self, input_size=int(input_size))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """Registry entry: how to build a model and what it needs.

    ``pretrained`` says where ImageNet weights come from: ``offline`` (inside an installed
    package), ``online`` (torchvision/timm download, needs a network) or ``none``.
    ``weights_found()`` says where they would come from on this machine now (e.g.
    ``"torchvision cache PATH"``), or ``None`` when they are not here and may not be downloaded.
    """

    name: str
    builder: Any  # Callable[[int, bool], cnnkit.models.classifier.Classifier]
    preprocessing: Preprocessing
    description: str
    pretrained: str = "none"
    family: str = ""
    imagenet_top1: float | None = None
    reference_params: dict[str, Any] = field(default_factory=dict)
    weights_found: Any = None  # Callable[[], str | None]; None: the model has no pretrained weights
