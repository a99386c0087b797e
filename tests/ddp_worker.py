"""Run by tests/test_ddp.py as a script (Lightning's ddp launcher runs it again for rank 1): trains through the
API and records, per rank and epoch, a fingerprint of every training image that rank was given.

    python tests/ddp_worker.py DATA OUT RECORDS EPOCHS [resume]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import lightning as L

import cnnkit


def fingerprint(image) -> str:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()[:16]


class SeenImages(L.Callback):
    """Fingerprints of the training images each rank receives; rank 0 also lists the whole training set's."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, []

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            dataset = trainer.train_dataloader.dataset
            every = [fingerprint(dataset[i][0]) for i in range(len(dataset))]
            (self.folder / "all.json").write_text(json.dumps(every))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.extend(fingerprint(image) for image in batch[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch  # 0-based, within the stage
        path = self.folder / f"rank{trainer.global_rank}-epoch{epoch}.json"
        path.write_text(json.dumps(self.seen))
        self.seen = []


if __name__ == "__main__":
    data, out, records, epochs = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    records.mkdir(parents=True, exist_ok=True)
    options = dict(model="lenet5", augment="none", precision="fp32", devices=2, strategy="ddp", progress=False)
    if sys.argv[5:] == ["resume"]:
        cnnkit.train(resume=out, epochs=epochs, callbacks=[SeenImages(records)], progress=False)
    else:
        cnnkit.train(data, out=out, epochs=epochs, callbacks=[SeenImages(records)], **options)
