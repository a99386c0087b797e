"""ONNX export of a localization model: two outputs, ``probabilities`` (N, K) and ``boxes`` (N, 4).

Boxes are corners in [0, 1] of the whole image (the model sees the image squashed to its square
input), so an app multiplies them by the original width and height. The input is the normalized
image as for classifiers' default ``normalized`` input kind.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from cnnkit.export.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, inference_session
from cnnkit.fileio import atomic_path
from cnnkit.models.config import Preprocessing

BOXES_NAME = "boxes"


class _Exported(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, boxes = self.model(image)
        return logits.softmax(1), boxes


def export_localizer_onnx(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (a :class:`~cnnkit.models.localizer.Localizer`) as ONNX, batch dynamic; returns the path."""
    p = model.preprocessing
    example = torch.zeros(2, p.channels, p.input_size, p.input_size)
    program = torch.onnx.export(
        _Exported(model).eval(), (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME, BOXES_NAME],
        opset_version=OPSET, dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}}, verbose=False,
    )  # fmt: skip
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(program.model_proto, str(tmp))
    return path


def onnx_localize(path: str | Path, images: torch.Tensor, preprocessing: Preprocessing) -> tuple[torch.Tensor, ...]:
    """(probabilities, boxes) of an exported model in ONNX Runtime, for prepared uint8 images (N, C, H, W)."""
    from cnnkit.data.transforms import eval_transform

    session = inference_session(Path(path))
    outputs = session.run([OUTPUT_NAME, BOXES_NAME], {INPUT_NAME: eval_transform(preprocessing)(images).numpy()})
    return tuple(torch.from_numpy(output) for output in outputs)
