"""Transfer learning on a CPU: cnnkit's cached recipe against the same recipe without caches.

(a) cnnkit's default: decoded images kept in RAM, the frozen layers run once per augmented view
    (3 per image), the head trained on the cached pooled features, then the top third of the
    base fine-tuned on the cached activations below it;
(b) baseline: the same model, data, input size, epochs, unfrozen blocks and augmentation, but no
    caches: every epoch decodes every image and pushes it through the frozen layers again.
Both run in this process, one after the other. Targets: (b) takes at least 5x longer than (a) to
reach the same validation accuracy; flowers128 test >= 82% with flip TTA; hymenoptera validation
>= 95%. Also reports flowers128 test accuracy without TTA and with ``shift_flip``. Both recipes run at
cnnkit's chosen input size (``cnnkit.train.input_size``; 160 px for flowers128's 128 px files) unless
``--image-size`` says otherwise.

Usage: python -m benchmarks.transfer [--datasets flowers128 hymenoptera] [--skip-baseline] [--image-size PX]
       [--unfreeze top:N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

import cnnkit
from benchmarks._common import DATASETS, report

SAME_FACTS = ("epochs", "fine_tune_epochs", "unfreeze", "augment")  # as the cached run resolved them
SAME_OPTIONS = ("batch_size", "patience")


def first_epoch_reaching(run, accuracy: float) -> dict[str, Any] | None:
    """The history row of the first epoch at or above ``accuracy`` (its ``elapsed`` counts from the start)."""
    return next((row for row in run.history if row["val_accuracy"] >= accuracy - 1e-9), None)


def describe(name: str, recipe: str, run) -> dict[str, Any]:
    seconds = run.metrics["stage_seconds"]
    return {
        "dataset": name,
        "recipe": recipe,
        "input_px": run.preprocessing.input_size,
        "decode_s": run.metrics["decode_seconds"],
        "head_s": seconds.get("head", 0.0),
        "fine_tune_s": seconds.get("fine_tune", 0.0),
        "total_s": run.metrics["total_seconds"],
        "best_val": run.metrics["val_accuracy"],
        "best": f"{run.metrics['best_stage']}:{run.metrics['best_epoch']}",
        "test": run.metrics.get("test_accuracy", "-"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["flowers128", "hymenoptera"])
    parser.add_argument("--epochs", type=int, default=None, help="head epochs (default: cnnkit's)")
    parser.add_argument("--fine-tune-epochs", type=int, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="only run cnnkit's recipe")
    parser.add_argument(
        "--image-size", type=int, default=None, help="input size for both recipes (default: cnnkit's choice)"
    )
    parser.add_argument(
        "--unfreeze", default="auto", help="what fine-tuning trains in both recipes (default: cnnkit's auto)"
    )
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    targets: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            common = dict(
                image_size=args.image_size, epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                unfreeze=args.unfreeze, progress=False, seed=0,
            )  # fmt: skip
            fast = cnnkit.train(DATASETS / name, model="efficientnet_lite0", out=f"{tmp}/{name}-a", **common)
            rows.append(describe(name, "cnnkit (caches)", fast))
            if name == "flowers128":
                tested = {}
                for tta in ("none", "flip", "shift_flip"):
                    tested[tta] = cnnkit.evaluate(fast.path, split="test", tta=tta, save=False).accuracy
                    rows.append({**rows[-1], "recipe": f"cnnkit, test TTA={tta}", "test": tested[tta]})
                targets["flowers128 test accuracy >= 82% (flip TTA)"] = tested["flip"] >= 0.82
            if name == "hymenoptera":
                targets["hymenoptera validation accuracy >= 95%"] = fast.metrics["val_accuracy"] >= 0.95
            if args.skip_baseline:
                continue
            same = {**common, **{key: getattr(fast.facts, key) for key in SAME_FACTS}}
            same.update({key: getattr(fast.config, key) for key in SAME_OPTIONS})
            slow = cnnkit.train(
                DATASETS / name, model="efficientnet_lite0", out=f"{tmp}/{name}-b", feature_cache=False,
                image_cache="off", **same,
            )  # fmt: skip
            rows.append(describe(name, "baseline (no caches)", slow))
            target = min(fast.metrics["val_accuracy"], slow.metrics["val_accuracy"])
            reached = {recipe: first_epoch_reaching(run, target) for recipe, run in (("a", fast), ("b", slow))}
            ratio = reached["b"]["elapsed"] / reached["a"]["elapsed"]
            where = {recipe: f"{row['stage']}:{row['epoch']}" for recipe, row in reached.items()}
            rows.append({"dataset": name, "recipe": f"time to {target:.2%} val", "total_s": reached["a"]["elapsed"],
                         "best": where["a"], "baseline_s": reached["b"]["elapsed"], "baseline_at": where["b"],
                         "speed_ratio": round(ratio, 2)})  # fmt: skip
            targets[f"{name}: baseline/cnnkit time to the same accuracy >= 5 (got {ratio:.1f})"] = ratio >= 5
    return 0 if report("transfer", "Transfer learning: caches vs none", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
