"""Classification and localization on critters-boxes with EfficientNet-Lite0 (pretrained, offline wheel).

Seeded 70/15/15 split, scored on the test split: class accuracy >= 97%, mean IoU >= 0.72 and
IoU >= 0.5 for at least 90% of the images, within 10 minutes. Beside it, the constant box (the
training images' mean box for every image), which scores a mean IoU of about 0.50.
Usage: python -m benchmarks.localize [--box-loss l1_giou smooth_l1 giou]
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
    parser.add_argument("--box-loss", nargs="+", default=["l1_giou"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.box_loss:
            started = time.perf_counter()
            run = cnnkit.train(DATASETS / "critters-boxes", model="efficientnet_lite0", task="localize",
                               box_loss=kind, progress=False, out=f"{tmp}/{kind}")  # fmt: skip
            seconds = time.perf_counter() - started
            m = run.metrics
            rows.append({
                "model": f"lite0, {kind}", "accuracy": m["test_accuracy"], "mean_iou": m["test_mean_iou"],
                "iou50": m["test_iou50"], "iou75": m["test_iou75"], "both_right": m["test_both_right"],
                "best": f"{m['best_stage']} epoch {m['best_epoch']}", "total_s": round(seconds, 1),
            })  # fmt: skip
        baseline = m["test_constant_box"]
        rows.append({
            "model": "constant box", "accuracy": "-", "mean_iou": baseline["mean_iou"], "iou50": baseline["iou50"],
            "iou75": baseline["iou75"], "both_right": "-", "best": "-", "total_s": "-",
        })  # fmt: skip
    first = rows[0]
    targets = {
        "class accuracy >= 97%": first["accuracy"] >= 0.97,
        "mean IoU >= 0.72": first["mean_iou"] >= 0.72,
        "IoU >= 0.5 for >= 90% of test images": first["iou50"] >= 0.90,
        "beats the constant box's mean IoU": first["mean_iou"] > baseline["mean_iou"],
        "within 600 s": first["total_s"] <= 600,
    }
    return 0 if report("localize", "Localization on critters-boxes (test split)", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
