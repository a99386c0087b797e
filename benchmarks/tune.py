"""``cnnkit tune`` on flowers128 with EfficientNet-Lite0: 30 trials against the default configuration.

Both train a new head on the frozen base (``fine_tune_epochs=0``, feature extraction): on this CPU
one fine-tuning epoch of the top third at 224 px takes about two minutes, so a study that fine-tunes
in every trial cannot hold 30 trials in 15 minutes. The space is the default one without its
fine-tuning options; trials share the cached pooled features (one cache per augmentation preset).

1. The default configuration, trained once: its validation and test accuracy.
2. A 30-trial TPE study on the validation split (the test split is never read), with a 15-minute
   timeout; the time of each trial.
3. The best configuration trained again on all splits (``evaluate_best``): its test accuracy, once.

Targets: 30 trials in under 15 minutes; the best configuration beats the default on validation and
is not worse on test. Usage: python -m benchmarks.tune [--trials 30] [--minutes 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cnnkit
from benchmarks._common import DATASETS, report

BASE = {"model": "efficientnet_lite0", "fine_tune_epochs": 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=15.0)
    args = parser.parse_args()
    data = DATASETS / "flowers128"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        default = cnnkit.train(data, **BASE, out=Path(tmp) / "default", progress=False)
        default_seconds = time.perf_counter() - started
        started = time.perf_counter()
        study = cnnkit.tune(
            data, **BASE, trials=args.trials, timeout=args.minutes * 60,
            study=Path(tmp) / "study", evaluate_best=True,
        )  # fmt: skip
        study_seconds = time.perf_counter() - started - (study.evaluated or {}).get("total_seconds", 0.0)
    finished = [t for t in study.trials if t["state"] in ("complete", "pruned")]
    seconds = [t["seconds"] for t in finished]
    best, evaluated = study.best, study.evaluated
    rows = [
        {"configuration": "default", "val_accuracy": default.metrics["val_accuracy"],
         "test_accuracy": default.metrics["test_accuracy"], "seconds": round(default_seconds, 1)},
        {"configuration": f"best of {len(finished)} trials (trial {best['number']})",
         "val_accuracy": best["val_accuracy"], "test_accuracy": evaluated["test_accuracy"],
         "seconds": evaluated["total_seconds"]},
        {"configuration": "study", "val_accuracy": None, "test_accuracy": None, "seconds": round(study_seconds, 1)},
        {"configuration": "seconds per trial (median, max)", "val_accuracy": None, "test_accuracy": None,
         "seconds": f"{statistics.median(seconds):.1f}, {max(seconds):.1f}"},
        {"configuration": f"pruned trials: {sum(t['state'] == 'pruned' for t in finished)}", "val_accuracy": None,
         "test_accuracy": None, "seconds": None},
    ]  # fmt: skip
    print("best options:", best["params"])
    targets = {
        f"{args.trials} trials in under {args.minutes:g} minutes": len(finished) >= args.trials
        and study_seconds < args.minutes * 60,
        "best beats the default on validation": best["val_accuracy"] > default.metrics["val_accuracy"],
        "best is not worse on test": evaluated["test_accuracy"] >= default.metrics["test_accuracy"],
    }
    return 0 if report("tune", "cnnkit tune: flowers128, EfficientNet-Lite0", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
