"""The LightningModule that trains a :class:`~cnnkit.models.classifier.Classifier`."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from cnnkit.models.classifier import Classifier, set_batchnorm_eval


class ClassifierModule(L.LightningModule):
    """Cross-entropy training with Adam and ReduceLROnPlateau.

    ``frozen_batchnorm`` keeps the BatchNorm layers of ``model.features`` in inference mode even
    while training: for a pretrained base this is both faster and more accurate on small data
    (measured: +5 points on flowers128 when fine-tuning EfficientNet-Lite0). Several modules
    (one per stage) may append to one shared ``history`` list.
    """

    def __init__(
        self,
        model: Classifier,
        lr: float,
        weight_decay: float = 0.0,
        class_weights: torch.Tensor | None = None,
        frozen_batchnorm: bool = False,
        channels_last: bool = True,
        stage: str = "train",
        plateau_patience: int = 2,
        history: list[dict[str, Any]] | None = None,
        run_started: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.frozen_batchnorm = frozen_batchnorm
        self.channels_last = channels_last
        self.stage = stage
        self.plateau_patience = plateau_patience
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.history: list[dict[str, Any]] = [] if history is None else history
        self._sums: dict[str, float] = {}
        self._epoch_started = 0.0
        self.run_started = time.perf_counter() if run_started is None else run_started

    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.model.features.parameters()):
            self.model.features.eval()  # a wholly frozen base is a fixed feature extractor, as when cached
        elif mode and self.frozen_batchnorm:
            set_batchnorm_eval(self.model.features)
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.model(inputs)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
        correct = (logits.argmax(1) == labels).sum().item()
        n = len(labels)
        for key, value in ((f"{prefix}loss", loss.item() * n), (f"{prefix}correct", correct), (f"{prefix}n", n)):
            self._sums[key] = self._sums.get(key, 0.0) + value
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{prefix}accuracy", correct / n, on_step=False, on_epoch=True, batch_size=n, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val_")

    def on_train_epoch_start(self) -> None:
        self.train()  # Lightning leaves modules in whatever mode they are in; ours has frozen parts
        self._sums = {}
        self._epoch_started = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        """Validation runs once the training batches of the epoch are done, so the row is complete.

        Callbacks read ``history[-1]`` in their ``on_train_epoch_end``, which Lightning calls later.
        """
        if self.trainer.sanity_checking:
            return
        s = self._sums
        row = {
            "epoch": len(self.history) + 1,
            "stage": self.stage,
            "loss": s.get("loss", 0.0) / max(s.get("n", 1), 1),
            "accuracy": s.get("correct", 0.0) / max(s.get("n", 1), 1),
            "val_loss": s.get("val_loss", 0.0) / max(s.get("val_n", 1), 1),
            "val_accuracy": s.get("val_correct", 0.0) / max(s.get("val_n", 1), 1),
            "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": time.perf_counter() - self._epoch_started,
            "elapsed": time.perf_counter() - self.run_started,
        }
        self.history.append(row)

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=1 / 3, patience=self.plateau_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def freeze(module: nn.Module, frozen: bool = True) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(not frozen)
