"""Class imbalance on flowers128: one class cut to 10% of its training images.

Runs cnnkit's default transfer recipe three ways (no weighting, ``class_weight="auto"``,
``sampler="balanced"``) on the same data and reports the cut class's test recall and the macro F1. Targets: each remedy raises
that recall by at least 10 points and does not lower macro F1.

Usage: python -m benchmarks.imbalance [--cut tulip] [--keep 0.1] [--fine-tune-epochs 0 (head only)]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np

import cnnkit
from benchmarks._common import DATASETS, report
from cnnkit.data import load_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cut", default="sunflower", help="class whose training images are cut")
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--fine-tune-epochs", type=int, default=None, help="default: cnnkit's")
    args = parser.parse_args()
    dataset = load_dataset(DATASETS / "flowers128")
    cut = dataset.classes.index(args.cut)
    labels = np.asarray(dataset.train.labels)
    rng = np.random.default_rng(0)
    cut_indices = np.flatnonzero(labels == cut)
    kept_cut = rng.choice(cut_indices, size=max(1, int(len(cut_indices) * args.keep)), replace=False)
    dataset.train = dataset.train.subset(np.sort(np.concatenate([np.flatnonzero(labels != cut), kept_cut])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for remedy, options in (
            ("none", {}),
            ("class_weight=auto", {"class_weight": "auto"}),
            ("sampler=balanced", {"sampler": "balanced"}),
        ):
            run = cnnkit.train(
                dataset, "efficientnet_lite0", image_size=args.image_size, fine_tune_epochs=args.fine_tune_epochs,
                progress=False, out=f"{tmp}/{len(rows)}", **options,
            )  # fmt: skip
            result = cnnkit.evaluate(run.path, data=dataset, split="test", save=False)
            rows.append(
                {
                    "remedy": remedy,
                    f"{args.cut}_train_images": len(kept_cut),
                    f"{args.cut}_recall": result.report[args.cut]["recall"],
                    "macro_f1": result.report["macro avg"]["f1-score"],
                    "accuracy": result.accuracy,
                }
            )
    base = rows[0]
    recall = f"{args.cut}_recall"
    targets = {}
    for row in rows[1:]:
        gain = row[recall] - base[recall]
        targets[f"{row['remedy']}: {args.cut} recall +{gain * 100:.1f} points (>= 10)"] = gain >= 0.10
        targets[f"{row['remedy']}: macro F1 not lower"] = row["macro_f1"] >= base["macro_f1"] - 1e-9
    return 0 if report("imbalance", f"flowers128 with {args.cut} cut to {args.keep:.0%}", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
