"""The LightningModule that trains a :class:`~cnnkit.models.localizer.Localizer`: class and box together.

The loss is the class's cross-entropy plus ``box_loss_weight`` times the box loss, the notes'
weighted sum of the two outputs' losses. Every epoch logs, beside loss and accuracy, the mean IoU,
the shares of images with IoU >= 0.5 and >= 0.75, and ``both`` (class right and IoU >= 0.5).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss

from cnnkit.evaluate.boxes import paired_iou
from cnnkit.models.localizer import ordered_corners, parameters_from_boxes
from cnnkit.train.module import ClassifierModule

DEFAULT_BOX_LOSS_WEIGHT = {"l1_giou": 1.0, "smooth_l1": 5.0, "giou": 2.0}  # measured on critters-boxes


def box_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over the batch of: GIoU loss on the corners; DETR's 5 L1 on the corners + 2 GIoU (l1_giou);
    or smooth L1 on (centre, sqrt size) as in the notes."""
    predicted, target = predicted.float(), target.float()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(parameters_from_boxes(predicted), parameters_from_boxes(target), beta=0.05)
    giou = generalized_box_iou_loss(ordered_corners(predicted), target, reduction="mean")
    return giou if kind == "giou" else 5 * F.l1_loss(predicted, target) + 2 * giou


def box_scores(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> dict:
    """Per-batch means of the localization metrics (each a per-image 0/1 or IoU, so batch means combine)."""
    iou = paired_iou(boxes, targets)
    right = logits.argmax(1) == labels
    return {
        "accuracy": right.float().mean(), "iou": iou.mean(), "iou50": (iou >= 0.5).float().mean(),
        "iou75": (iou >= 0.75).float().mean(), "both": (right & (iou >= 0.5)).float().mean(),
    }  # fmt: skip


class LocalizerModule(ClassifierModule):
    """:class:`ClassifierModule` with a box output; keeps the best epoch by ``val_both`` then ``val_iou``."""

    monitor = "val_iou"
    measures = ("loss", "accuracy", "iou", "iou50", "iou75", "both")

    def __init__(self, model, lr: float, *, box_loss: str = "l1_giou", box_loss_weight: float | None = None,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(model, lr, **options)
        self.box_loss_kind = box_loss
        self.box_loss_weight = DEFAULT_BOX_LOSS_WEIGHT[box_loss] if box_loss_weight is None else box_loss_weight

    @staticmethod
    def best_key(row: dict[str, Any]) -> tuple[float, ...]:
        return (row["val_both"], row["val_iou"], -row["val_loss"])

    def _step(self, batch, prefix: str) -> torch.Tensor:
        images, (labels, targets) = batch
        logits, boxes = self(images)
        class_loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
        loss = class_loss + self.box_loss_weight * box_loss(boxes, targets, self.box_loss_kind)
        self._record(
            prefix, {"loss": loss, **box_scores(logits.detach(), boxes.detach(), labels, targets)}, len(labels)
        )
        return loss
