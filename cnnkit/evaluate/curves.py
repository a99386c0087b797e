"""Read the training curves like the notes do: where validation loss bottomed out, and where overfitting began.

The notes' sign of overfitting is a validation loss that keeps going up while the training loss keeps
going down: the model starts memorising training images. Here that is made precise as a train/validation
gap (``val_loss - loss``) that, after the epoch of lowest validation loss, grows past its value at that
epoch and never comes back, for at least ``min_epochs`` epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class CurveLandmarks:
    """Epochs worth pointing at on the training curves; ``None`` when the history does not show them."""

    best_epoch: int | None
    best_val_loss: float | None
    overfitting_epoch: int | None
    gap_at_best: float | None
    final_gap: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One sentence for people: what the curves say about when to stop."""
        if self.best_epoch is None:
            return "No validation loss was recorded, so the curves cannot show overfitting."
        text = f"Validation loss was lowest ({self.best_val_loss:.3f}) at epoch {self.best_epoch}."
        if self.overfitting_epoch is None:
            return text + " The train/validation gap did not keep widening afterwards: no clear sign of overfitting."
        return (
            text + f" From epoch {self.overfitting_epoch} the gap between validation and training loss kept widening "
            f"({self.gap_at_best:.3f} to {self.final_gap:.3f}): the model began memorising the training images."
        )


def find_landmarks(history: list[dict[str, Any]], min_epochs: int = 2) -> CurveLandmarks:
    """Epoch of lowest validation loss and, if the gap keeps widening after it, where overfitting starts."""
    rows = [row for row in history if row.get("val_loss") is not None and row.get("loss") is not None]
    if not rows:
        return CurveLandmarks(None, None, None, None, None)
    best = min(rows, key=lambda row: row["val_loss"])
    gaps = [row["val_loss"] - row["loss"] for row in rows]
    best_position = rows.index(best)
    gap_at_best = gaps[best_position]
    onset = len(rows)  # walk back from the last epoch while the gap stays wider than at the best epoch
    while onset > best_position + 1 and gaps[onset - 1] > gap_at_best:
        onset -= 1
    return CurveLandmarks(
        best_epoch=int(best["epoch"]),
        best_val_loss=float(best["val_loss"]),
        overfitting_epoch=int(rows[onset]["epoch"]) if len(rows) - onset >= min_epochs else None,
        gap_at_best=float(gap_at_best),
        final_gap=float(gaps[-1]),
    )
