"""How good are the boxes: IoU against the annotations, overall and per class, and the constant-box baseline.

The headline numbers are the class accuracy, the mean IoU, the shares of images whose box has an
IoU of at least 0.5 and 0.75 with the true one, and "both right": class correct and IoU >= 0.5.
The baseline to beat is one constant box (the training images' mean box) for every image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.ops import box_iou


def paired_iou(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each box with its own target: (N, 4), (N, 4) corners -> (N,)."""
    if len(predicted) == 0:
        return predicted.new_zeros(0)
    return box_iou(predicted.float(), target.float()).diagonal()


def _scores(right: torch.Tensor, iou: torch.Tensor) -> dict[str, float]:
    if len(iou) == 0:
        return {"num_images": 0}
    return {
        "num_images": len(iou), "accuracy": right.float().mean().item(), "mean_iou": iou.mean().item(),
        "iou50": (iou >= 0.5).float().mean().item(), "iou75": (iou >= 0.75).float().mean().item(),
        "both_right": (right & (iou >= 0.5)).float().mean().item(),
    }  # fmt: skip


def box_metrics(
    predicted_labels: torch.Tensor, predicted_boxes: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor,
    classes: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Overall scores (:func:`_scores`' keys) and the same per true class under ``per_class``."""
    iou, right = paired_iou(predicted_boxes, boxes), predicted_labels == labels
    result: dict[str, Any] = _scores(right, iou)
    result["per_class"] = {name: _scores(right[labels == k], iou[labels == k]) for k, name in enumerate(classes)}
    return result


def constant_box_metrics(train_boxes: torch.Tensor, boxes: torch.Tensor) -> dict[str, float]:
    """The baseline: every image gets the mean of the training boxes (class always right)."""
    mean_box = train_boxes.mean(0, keepdim=True).expand_as(boxes)
    scores = _scores(torch.ones(len(boxes), dtype=torch.bool), paired_iou(mean_box, boxes))
    scores.pop("accuracy", None)
    scores.pop("both_right", None)
    return scores


def _font_path() -> str:
    """The DejaVu Sans font matplotlib ships: torchvision's drawing otherwise falls back to a tiny bitmap font."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def draw_boxes(
    image: torch.Tensor, boxes: list[list[float]], labels: list[str] | None, colors: list[str]
) -> torch.Tensor:
    """uint8 (C, H, W) image with pixel ``boxes`` drawn and labelled, lines and text scaled to the image size."""
    from torchvision.utils import draw_bounding_boxes

    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    side = max(image.shape[-2:])
    return draw_bounding_boxes(
        image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels=labels, colors=colors,
        width=max(2, round(side / 160)), font=_font_path(), font_size=max(10, round(side / 28)),
    )  # fmt: skip
