"""Callbacks that make a run safe to interrupt and never worse after fine-tuning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from cnnkit.fileio import save_weights
from cnnkit.train.run import write_history


class KeepBestWeights(L.Callback):
    """Keep the best weights by validation accuracy across every stage of a run.

    One instance is shared by all stages, so fine-tuning can only replace the frozen-base model
    if it validates better (ties go to the lower validation loss). Each improvement is written to
    ``model.safetensors`` at once, together with ``history.csv``, so an interrupted run keeps its
    best model. ``network`` is the whole model, also when a stage trains only its head.
    """

    def __init__(self, run_dir: Path, network: torch.nn.Module) -> None:
        self.run_dir = run_dir
        self.network = network
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_row: dict | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = pl_module.history[-1]
        key = (row["val_accuracy"], -row["val_loss"])
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_row = key, row
            self.best_state = {k: v.detach().clone().cpu() for k, v in self.network.state_dict().items()}
            save_weights(self.best_state, self.run_dir / "model.safetensors")
        write_history(self.run_dir / "history.csv", pl_module.history)

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
