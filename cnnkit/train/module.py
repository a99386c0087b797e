"""The LightningModule that trains a :class:`~cnnkit.models.classifier.Classifier`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric

from cnnkit.models.classifier import Classifier, feature_blocks, set_batchnorm_eval


class ClassifierModule(L.LightningModule):
    """Cross-entropy training with Adam (or Nesterov SGD) and a plateau or one-cycle schedule; every metric goes
    through ``self.log``.

    ``frozen_batchnorm`` keeps the BatchNorm layers of ``model.features`` in inference mode even
    while training: for a pretrained base this is both faster and more accurate on small data
    (measured: +5 points on flowers128 when fine-tuning EfficientNet-Lite0).
    """

    measures: tuple[str, ...] = ("loss", "accuracy")  # what each step logs, and "val_" + each for validation

    monitor = "val_accuracy"  # what early stopping watches

    @staticmethod
    def best_key(row: dict[str, Any]) -> tuple[float, ...]:
        """How epochs' history rows rank for keeping the best weights: accuracy, then the lower loss."""
        return (row["val_accuracy"], -row["val_loss"])

    def __init__(
        self,
        model: Classifier,
        lr: float,
        weight_decay: float = 0.0,
        class_weights: torch.Tensor | None = None,
        frozen_batchnorm: bool = False,
        channels_last: bool = True,
        plateau_patience: int = 2,
        label_smoothing: float = 0.0,
        one_cycle: bool = False,
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if channels_last:  # weights in the inputs' layout: convolutions then skip a conversion each (LeNet-5: 20%)
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.one_cycle = one_cycle
        self.optimizer = optimizer
        self.frozen_batchnorm = frozen_batchnorm
        self.channels_last = channels_last
        self.plateau_patience = plateau_patience
        self.register_buffer("class_weights", class_weights, persistent=False)
        # Validation means over every rank's images: torchmetrics sums numerators and counts across ranks, where
        # Lightning's own mean reduction rounds the averaged count (wrong for unequal validation shares).
        self.val_means = nn.ModuleDict({f"val_{name}": MeanMetric() for name in self.measures})

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
        smoothing = self.label_smoothing if prefix == "" else 0.0  # validation reports the plain loss
        loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights, label_smoothing=smoothing)
        accuracy = (logits.argmax(1) == labels).float().mean()
        self._record(prefix, {"loss": loss, "accuracy": accuracy}, len(labels))
        return loss

    def _record(self, prefix: str, values: dict[str, torch.Tensor], count: int) -> None:
        """Log a training step's :attr:`measures` (Lightning averages them over the epoch), or add a validation
        step's to :attr:`val_means`, logged once per epoch: logging each step was 3 s of an 8 s MNIST validation."""
        for name, value in values.items():
            if prefix:
                self.val_means[prefix + name].update(value.detach(), weight=count)
            else:  # sync_dist: over all ranks of a data-parallel run (equal training shares)
                self.log(name, value, on_step=False, on_epoch=True, batch_size=count, logger=False, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val_")

    def on_train_epoch_start(self) -> None:
        self.train()  # Lightning leaves modules in whatever mode they are in; ours has frozen parts

    def on_train_start(self) -> None:
        """A stage given more epochs on resume gets back its checkpoint's one-cycle schedule, sized for the old
        length (stepping past its end is an error): stretch the cycle over the new length, from the step it is at."""
        if not self.one_cycle:
            return
        config = self.trainer.lr_scheduler_configs[0]
        if config.scheduler.total_steps != self._cycle_steps():
            config.scheduler = self._one_cycle(config.scheduler.optimizer, last_step=config.scheduler.last_epoch)

    def on_validation_epoch_end(self) -> None:
        for name, mean in self.val_means.items():  # compute() sums over ranks; sync_dist only averages equal values
            self.log(name, mean.compute(), logger=False, sync_dist=True)
            mean.reset()
        if not self.trainer.sanity_checking:
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], logger=False, sync_dist=True)

    def on_validation_end(self) -> None:
        """Step the plateau schedule here, before the epoch's checkpoint, so a resumed run has the same rate."""
        if not self.trainer.sanity_checking and not self.one_cycle:
            self.lr_schedulers().step(self.trainer.callback_metrics["val_loss"])

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """One-cycle steps every batch; the plateau schedule already stepped in :meth:`on_validation_end`
        (Lightning would step it after the epoch's checkpoint)."""
        if self.one_cycle:
            scheduler.step()

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.one_cycle:
            cycle = self._one_cycle(optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cycle, "interval": "step"}}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=1 / 3, patience=self.plateau_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}

    def _cycle_steps(self) -> int:
        """The stage's batches; OneCycleLR cannot run fewer than 2 steps."""
        return max(2, int(self.trainer.estimated_stepping_batches))

    def _one_cycle(self, optimizer: torch.optim.Optimizer, last_step: int = -1) -> Any:
        """Warm up to ``self.lr`` over the first quarter of the stage's steps, then anneal; ``last_step`` resumes it.

        A stage of a few batches warms up over 1.5 steps instead: OneCycleLR divides by zero when its warm-up is
        exactly one step (4 batches).
        """
        total = self._cycle_steps()
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=total, pct_start=max(0.25, 1.5 / total),
            last_epoch=max(-1, last_step - 1),
        )  # fmt: skip


def freeze(module: nn.Module, frozen: bool = True) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(not frozen)


def unfreeze_top_blocks(network: Classifier, top: int | None) -> None:
    """Make the whole base trainable (``top=None``), or only its top ``top`` blocks."""
    if top is None:
        freeze(network.features, frozen=False)
        return
    freeze(network.features, frozen=True)
    for block in feature_blocks(network.features)[-top:]:
        freeze(block, frozen=False)
