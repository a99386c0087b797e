"""Predictors: anything that turns prepared images into class probabilities, with the model's preprocessing.

:class:`ImagePredictor` is the protocol that evaluate, export checks and ``cnnkit predict`` rely
on. :class:`Predictor` satisfies it for a PyTorch model; the exported ONNX and TorchScript models
satisfy it through :class:`cnnkit.export.network.ExportedPredictor`. Image decoding for prediction
lives here too, so every engine sees exactly the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from cnnkit.data.decode import UndecodableImage, decode_file
from cnnkit.data.transforms import center_crop_resize, eval_transform
from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier
from cnnkit.models.config import Preprocessing
from cnnkit.runtime import autocast, inference_batch_size, keep_freed_memory, pick_device, resolve_precision
from cnnkit.tta import averaged_views, check_tta


class ImagePredictor(Protocol):
    """What every engine offers: its classes, its preprocessing, and probabilities for prepared images."""

    classes: list[str]
    preprocessing: Preprocessing

    def probabilities(self, images: torch.Tensor, batch_size: int | None = None, tta: str = "none") -> torch.Tensor:
        """Class probabilities (N, classes) for prepared uint8 images (N, C, H, W)."""
        ...

    def load_images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Decode and prepare image files for this predictor."""
        ...


def prepare_image(image: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """A decoded uint8 image -> the uint8 crop the model sees."""
    p = preprocessing
    return center_crop_resize(image, p.input_size, p.crop_pct, p.interpolation, p.resize == "squash")


def read_image(path: str | Path, channels: int) -> torch.Tensor:
    """Decode an image file to uint8 (C, H, W); a missing or unreadable file is a one-line error."""
    if not Path(path).is_file():
        what = "is a folder, not an image file" if Path(path).is_dir() else "does not exist"
        raise CnnkitError(f"image {path} {what}")
    try:
        return decode_file(path, channels)
    except UndecodableImage as exc:
        raise CnnkitError(f"cannot read {path} as an image ({exc})") from exc


def load_images(paths: Sequence[str | Path], preprocessing: Preprocessing) -> torch.Tensor:
    """Decode and prepare image files; an unreadable one is a one-line error naming it."""
    return torch.stack([prepare_image(read_image(path, preprocessing.channels), preprocessing) for path in paths])


@dataclass
class Predictor:
    """A PyTorch model in inference mode on the best available device, with its preprocessing."""

    model: Classifier
    preprocessing: Preprocessing
    classes: list[str]
    device: torch.device
    precision: str
    temperature: float = 1.0

    @classmethod
    def create(
        cls,
        model: Classifier,
        classes: list[str],
        device: str = "auto",
        precision: str = "auto",
        temperature: float = 1.0,
    ) -> Predictor:
        """``temperature`` divides the logits before softmax (1.0: the model as trained; see ``calibration.json``)."""
        keep_freed_memory()
        chosen = pick_device(device)
        model = model.eval().to(chosen, memory_format=torch.channels_last)
        return cls(model, model.preprocessing, classes, chosen, resolve_precision(precision, chosen), temperature)

    @property
    def localizes(self) -> bool:
        """Whether the model also predicts a box (a localization run's :class:`~cnnkit.models.localizer.Localizer`)."""
        return isinstance(getattr(self.model, "box_head", None), torch.nn.Module)

    def probabilities(self, images: torch.Tensor, batch_size: int | None = None, tta: str = "none") -> torch.Tensor:
        """Class probabilities for prepared uint8 images (N, C, H, W), averaged over ``tta``'s views
        (:mod:`cnnkit.tta`: ``flip`` adds the mirror image, ``shift_flip`` one-pixel shifts of both too).

        ``batch_size`` defaults to :func:`~cnnkit.runtime.inference_batch_size` for the device.
        """
        return self._outputs(images, batch_size, tta)[0]

    def localize(
        self, images: torch.Tensor, batch_size: int | None = None, tta: str = "none"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(class probabilities (N, K), boxes (N, 4) as corners in [0, 1] of the image) from a localization model;
        with ``tta``, each view's box is mapped back to the image (unmirrored, unshifted) before averaging."""
        if not self.localizes:
            raise CnnkitError("this model predicts classes only; train with --task localize for boxes")
        return self._outputs(images, batch_size, tta)  # type: ignore[return-value]

    @torch.inference_mode()
    def _outputs(
        self, images: torch.Tensor, batch_size: int | None, tta: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_tta(tta)
        normalize = eval_transform(self.preprocessing)
        batch_size = batch_size or inference_batch_size(self.device)
        probabilities, boxes = [torch.empty(0, len(self.classes))], [torch.empty(0, 4)]
        for start in range(0, len(images), batch_size):
            batch = normalize(images[start : start + batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                probs, box = averaged_views(self._run, batch, tta)
            probabilities.append(probs.cpu())
            if box is not None:
                boxes.append(box.cpu())
        return torch.cat(probabilities), torch.cat(boxes) if self.localizes else None

    def _run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(probabilities, boxes or None) of one normalized batch."""
        outputs = self.model(batch.contiguous(memory_format=torch.channels_last))
        logits, boxes = outputs if isinstance(outputs, tuple) else (outputs, None)
        return (logits.float() / self.temperature).softmax(1), None if boxes is None else boxes.float()

    def load_images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        return load_images(paths, self.preprocessing)


@dataclass
class Subject:
    """A network in eval mode with its class names and the temperature its probabilities use."""

    model: Classifier
    classes: list[str]
    temperature: float = 1.0


def open_subject(run: str | Path | None = None, model: str | None = None) -> Subject:
    """A trained run folder, or a registry model with its ImageNet weights and labels, used as-is."""
    if (run is None) == (model is None):
        raise CnnkitError("give exactly one of RUN (a trained run folder) or --model NAME (a pretrained model)")
    if run is not None:
        from cnnkit.run import load_run

        loaded = load_run(run)
        return Subject(loaded.load_model(), loaded.classes, loaded.temperature)
    from cnnkit.models.imagenet import imagenet_classes
    from cnnkit.models.registry import create_model

    return Subject(create_model(model, 1000, pretrained=True).eval(), imagenet_classes())
