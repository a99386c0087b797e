"""What training shows while it runs, on stderr: a live bar on a terminal, plain lines in a log.

Epochs are numbered as the run's history numbers them (from 1, across stages), so the last line
shown agrees with the summary. Each epoch ends with one line of metrics that fits 80 columns.
The bars and plain lines themselves come from :mod:`cnnkit.progress`.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from cnnkit.progress import PlainProgress, progress_console

STAGE_LABELS = {"train": "epoch", "head": "head", "fine_tune": "fine-tune"}


def epoch_line(row: dict[str, Any], total: int) -> str:
    """One history row as a line of at most 80 characters."""
    label = STAGE_LABELS.get(row["stage"], row["stage"])
    return (
        f"{label} {row['epoch']}/{total}  loss {row['loss']:.3f} acc {row['accuracy']:.1%}  "
        f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.1%}  {row['seconds']:.1f} s"
    )


def start_line(num_images: dict[str, int], num_classes: int, device: str, size: int) -> str:
    splits = " / ".join(f"{split} {count}" for split, count in num_images.items())
    total = sum(num_images.values())
    return f"found {total} images in {num_classes} classes ({splits}), on {device}, at {size} px"


class EpochProgress(L.Callback):
    """The epochs of one stage: a bar of its batches, then the epoch's metrics in one line.

    Must follow the :class:`~cnnkit.train.callbacks.RunRecorder` in the trainer's callbacks, so
    that the epoch's history row exists when its line is printed. ``later_epochs`` are the epochs
    planned for the stages after this one, counted into the total shown.
    """

    def __init__(self, rows: list[dict[str, Any]], stage: str, later_epochs: int = 0) -> None:
        self.rows, self.stage, self.later_epochs = rows, stage, later_epochs
        self.console = progress_console()
        self.live: Any = None
        self.ticker: PlainProgress | None = None
        self.task: Any = None
        self.total = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        before = len(self.rows) - trainer.current_epoch  # epochs of the stages before this one
        self.total = before + int(trainer.max_epochs or 0) + self.later_epochs
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self.live = Progress(*columns, console=self.console, transient=True)
            self.live.start()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = f"{STAGE_LABELS.get(self.stage, self.stage)} {len(self.rows) + 1}/{self.total}"
        batches = int(trainer.num_training_batches)
        if self.live is not None:
            if self.task is not None:
                self.live.remove_task(self.task)
            self.task = self.live.add_task(name, total=batches)
        else:
            self.ticker = PlainProgress(name, batches, "batches", self.console)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.live is not None:
            self.live.advance(self.task)
        elif self.ticker is not None:
            self.ticker.update(args[-1] + 1)  # batch_idx

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        (self.live.console if self.live is not None else self.console).print(epoch_line(self.rows[-1], self.total))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
