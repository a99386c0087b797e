"""What a run records each epoch, in an order that survives ``kill -9`` at any moment.

At the end of every epoch :class:`RunRecorder` turns the logged metrics into a history row, then
writes, each file atomically:

1. ``last.ckpt``, the Lightning checkpoint (weights, optimizer, scheduler, early stopping, the
   history so far, the best epoch, the random number generators): the one source of truth;
2. ``model.safetensors`` (and its SHA-256) when the epoch is the best so far;
3. ``history.csv``.

A kill between 1 and 2 leaves older best weights on disk, and :meth:`RunRecorder.on_fit_start`
writes the right ones when the run resumes, from the restored checkpoint.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cnnkit.crashpoints import crash_point
from cnnkit.fileio import atomic_path, load_weights, weights_metadata
from cnnkit.run import CHECKPOINT, HISTORY, HISTORY_COLUMNS, WEIGHTS, save_run_weights, weights_intact, write_history
from cnnkit.train.distributed import current, gather_objects


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through a temporary file and a rename, and read back without unpickling code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
        return read_checkpoint(Path(path))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint as plain tensors and containers (``weights_only``: no code runs while loading)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class RunProgress:
    """The state a run carries from epoch to epoch and stage to stage, and into its checkpoint."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_key: tuple[float, float] | None = None
    best_row: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stage_index: int = 0
    finished: bool = False
    elapsed_before: float = 0.0  # seconds spent by earlier processes of a resumed run
    started: float = field(default_factory=time.perf_counter)  # when this process began the run

    def begin_stage(self, index: int) -> None:
        self.stage_index, self.finished = index, False

    def state(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "best_key": self.best_key, "best_row": self.best_row,
            "stage_index": self.stage_index, "finished": self.finished, "rng": _rng_state(),
        }  # fmt: skip

    def restore(self, state: dict[str, Any], run_dir: Path) -> None:
        """Take over a checkpoint's progress; the best weights come from ``model.safetensors`` if it has them."""
        self.rows = list(state["rows"])
        self.best_key = tuple(state["best_key"]) if state["best_key"] is not None else None
        self.best_row, self.stage_index, self.finished = state["best_row"], state["stage_index"], state["finished"]
        self.elapsed_before = float(self.rows[-1]["elapsed"]) if self.rows else 0.0
        self.best_state = None
        weights = run_dir / WEIGHTS
        has_best = self.best_row is not None and weights.is_file() and weights_intact(run_dir)
        if has_best and weights_metadata(weights).get("epoch") == str(self.best_row["epoch"]):
            self.best_state = load_weights(weights)


def _rng_state() -> dict[str, Any]:
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": list(random.getstate()[1]),
    }


def own_state(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's generator states from a checkpoint's recorder state (rank 0's when saved by other processes)."""
    processes, ranks = current(), state.get("ranks")
    if ranks is not None and len(ranks) == processes.world:
        return ranks[processes.rank]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put every random number generator back where a checkpoint found it."""
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))


class RunRecorder(L.Callback):
    """Per epoch: a history row from the logged metrics, the best weights and the resume checkpoint.

    One :class:`RunProgress` is shared by all stages, so fine-tuning only replaces the frozen-base
    model if it validates better (ties go to the lower validation loss). ``network`` is the whole
    model, also when a stage trains only its head. ``generators`` are the stage's data-order
    generators, saved and restored with the checkpoint so a resumed epoch sees the same batches.
    """

    def __init__(
        self,
        run_dir: Path,
        network: torch.nn.Module,
        progress: RunProgress,
        stage: str,
        generators: list[torch.Generator],
        reset_early_stopping: bool = False,
    ) -> None:
        self.run_dir, self.network, self.progress, self.stage = run_dir, network, progress, stage
        self.generators = generators
        self.reset_early_stopping = reset_early_stopping
        self.epoch_started = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        state = {**self.progress.state(), "generators": [g.get_state() for g in self.generators]}
        if current().world > 1:  # each rank's augmentation and view draws are its own
            state["ranks"] = gather_objects({"rng": state["rng"], "generators": state["generators"]})
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.progress.restore(state_dict, self.run_dir)
        own = own_state(state_dict)
        set_rng_state(own["rng"])
        for generator, saved in zip(self.generators, own["generators"], strict=True):
            generator.set_state(saved)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume, write the best weights if the checkpoint knows a best epoch the weights file lacks."""
        if self.progress.best_row is not None and self.progress.best_state is None:
            self._keep_best(self.progress.best_row, write=trainer.is_global_zero)
        if self.reset_early_stopping:  # an extended run gets its full patience again
            for callback in trainer.callbacks:
                if isinstance(callback, L.pytorch.callbacks.EarlyStopping):
                    callback.wait_count = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        crash_point("epoch")
        row = self._row(trainer)
        progress = self.progress
        key = pl_module.best_key(row)
        improved = progress.best_key is None or key > progress.best_key
        if improved:
            progress.best_key, progress.best_row = key, row
        progress.rows.append(row)
        trainer.save_checkpoint(self.run_dir / CHECKPOINT)
        crash_point("checkpointed")
        crash_point(f"checkpointed-{self.stage}")
        if improved:
            self._keep_best(row, write=trainer.is_global_zero)
        if trainer.is_global_zero:
            write_history(self.run_dir / HISTORY, progress.rows)
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k not in ("epoch", "stage")}, step=row["epoch"])

    def _row(self, trainer: L.Trainer) -> dict[str, Any]:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        now = time.perf_counter()
        extra = {name: value for name, value in metrics.items() if name not in HISTORY_COLUMNS}  # e.g. val_iou
        return {**extra,
            "epoch": len(self.progress.rows) + 1, "stage": self.stage, "loss": metrics["loss"],
            "accuracy": metrics["accuracy"], "val_loss": metrics["val_loss"],
            "val_accuracy": metrics["val_accuracy"], "lr": metrics["lr"], "seconds": now - self.epoch_started,
            "elapsed": self.progress.elapsed_before + now - self.progress.started,
        }  # fmt: skip

    def _keep_best(self, row: dict[str, Any], write: bool = True) -> None:
        self.progress.best_state = {k: v.detach().clone().cpu() for k, v in self.network.state_dict().items()}
        if write:
            save_run_weights(self.run_dir, self.progress.best_state, epoch=int(row["epoch"]))

    def finish_stage(self, trainer: L.Trainer) -> None:
        """Mark the stage done in the checkpoint, so a resume goes on with the next stage."""
        self.progress.finished = True
        trainer.save_checkpoint(self.run_dir / CHECKPOINT)

    def restore_best(self, model: torch.nn.Module) -> None:
        if self.progress.best_state is not None:
            model.load_state_dict(self.progress.best_state)
