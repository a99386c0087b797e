"""LeNet-5 (the notes' variant) on MNIST PNGs: >= 99.0% test accuracy.

Usage: python -m benchmarks.train_mnist [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import cnnkit
from benchmarks._common import DATASETS, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = cnnkit.train(
            DATASETS / "mnist-png",
            model="lenet5",
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=5e-4,
            augment="none",
            progress=False,
            out=f"{tmp}/run",
        )
        seconds = time.perf_counter() - started
        history = run.history  # read before the temporary run folder is deleted
    row = {
        "epochs_run": len(history),
        "best_epoch": run.metrics["best_epoch"],
        "val_accuracy": run.metrics["val_accuracy"],
        "test_accuracy": run.metrics["test_accuracy"],
        "decode_s": run.metrics["decode_seconds"],
        "total_s": round(seconds, 1),
        "precision": run.facts.precision,
    }
    targets = {"test accuracy >= 99.0%": row["test_accuracy"] >= 0.99}
    return 0 if report("train_mnist", "LeNet-5 on MNIST", [row], targets) else 1


if __name__ == "__main__":
    sys.exit(main())
