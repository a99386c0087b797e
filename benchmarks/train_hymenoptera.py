"""EfficientNet-Lite0 on hymenoptera (ants vs bees): >= 94% validation accuracy within 3 minutes.

For scale: a logistic regression on the frozen, pooled features reaches about 94% here, so the
two-stage recipe must at least match it. Also compares bf16 autocast with fp32 (accuracy and time).
Usage: python -m benchmarks.train_hymenoptera [--precisions auto fp32]
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
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions:
            started = time.perf_counter()
            run = cnnkit.train(
                DATASETS / "hymenoptera",
                model="efficientnet_lite0",
                precision=precision,
                progress=False,
                out=f"{tmp}/{precision}",
            )
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "precision": run.facts.precision,
                    "val_accuracy": run.metrics["val_accuracy"],
                    "best": f"{run.metrics['best_stage']} epoch {run.metrics['best_epoch']}",
                    "head_s": run.metrics["stage_seconds"].get("head", 0.0),
                    "fine_tune_s": run.metrics["stage_seconds"].get("fine_tune", 0.0),
                    "total_s": round(seconds, 1),
                }
            )
    default = rows[0]
    targets = {
        "default recipe >= 94% validation accuracy": default["val_accuracy"] >= 0.94,
        "default recipe within 180 s": default["total_s"] <= 180,
    }
    return 0 if report("train_hymenoptera", "EfficientNet-Lite0 on hymenoptera", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
