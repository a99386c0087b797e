"""The pretrained input size, measured: EfficientNet-Lite0's default recipe on flowers128 at several sizes.

flowers128's files are 128 px (with about 40 px of real detail); Lite0 was pretrained at 224 px.
Each size trains the same seeded split with the default two-stage recipe and reports the test
accuracy, the wall time and the process CPU time (comparable across sizes on a shared machine).
The rule in ``cnnkit.train.input_size`` (1.25 x the short side, in steps of 32) comes from this.

Usage: python -m benchmarks.input_size [--sizes 128 160 192 224] [--data flowers128]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import cnnkit
from benchmarks._common import DATASETS, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 192, 224])
    parser.add_argument("--data", default="flowers128")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            run = cnnkit.train(
                DATASETS / args.data, model="efficientnet_lite0", image_size=size, progress=False, out=f"{tmp}/run"
            )
            rows.append(
                {
                    "size": size,
                    "test_accuracy": run.metrics["test_accuracy"],
                    "val_accuracy": run.metrics["val_accuracy"],
                    "best_stage": run.metrics["best_stage"],
                    "wall_s": round(time.perf_counter() - wall, 1),
                    "cpu_s": round(time.process_time() - cpu, 1),
                }
            )
        print(rows[-1], flush=True)
    chosen = rule_size(args.data)
    best = max(rows, key=lambda row: row["test_accuracy"])
    at_chosen = next((row for row in rows if row["size"] == chosen), None)
    targets = {
        f"the rule's {chosen} px is within 1 point of the best size ({best['size']} px)": at_chosen is not None
        and at_chosen["test_accuracy"] >= best["test_accuracy"] - 0.01
    }
    ok = report("input_size", f"EfficientNet-Lite0 on {args.data} by input size", rows, targets)
    return 0 if ok else 1


def rule_size(data: str) -> int:
    """The size ``cnnkit train`` picks for this data when ``--image-size`` is not given."""
    from cnnkit.data import load_dataset
    from cnnkit.data.sizes import survey_sizes
    from cnnkit.models.registry import get_model_info
    from cnnkit.train.input_size import choose_input_size

    survey = survey_sizes(load_dataset(DATASETS / data).train)
    return choose_input_size(get_model_info("efficientnet_lite0"), survey, pretrained=True, given=None).size


if __name__ == "__main__":
    sys.exit(main())
