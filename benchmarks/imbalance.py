"""Class imbalance on flowers128: one class cut to 10% of its training images.

Runs cnnkit's default transfer recipe three ways (no weighting, ``class_weight="auto"``,
``sampler="balanced"``) on the same data and reports the cut class's test recall and the macro
F1, averaged over training seeds (the cut class has about 110 test images, and one run's recall
moves by 5-10 points from seed to seed). Targets, on the means: each remedy raises that recall
by at least 10 points and does not lower macro F1.

Usage: python -m benchmarks.imbalance [--cut tulip] [--keep 0.1] [--seeds 0 1 2] [--fine-tune-epochs 0 (head only)]
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (same data split)")
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
            recalls, f1s, accuracies = [], [], []
            for seed in args.seeds:
                run = cnnkit.train(
                    dataset, model="efficientnet_lite0", image_size=args.image_size,
                    fine_tune_epochs=args.fine_tune_epochs, seed=seed, progress=False,
                    out=f"{tmp}/{remedy}-{seed}", **options,
                )  # fmt: skip
                result = cnnkit.evaluate(run.path, data=dataset, split="test", save=False)
                recalls.append(result.report[args.cut]["recall"])
                f1s.append(result.report["macro avg"]["f1-score"])
                accuracies.append(result.accuracy)
            rows.append(
                {
                    "remedy": remedy,
                    f"{args.cut}_train_images": len(kept_cut),
                    f"{args.cut}_recall": float(np.mean(recalls)),
                    "recall_per_seed": " ".join(f"{r:.3f}" for r in recalls),
                    "macro_f1": float(np.mean(f1s)),
                    "f1_per_seed": " ".join(f"{f:.3f}" for f in f1s),
                    "accuracy": float(np.mean(accuracies)),
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
