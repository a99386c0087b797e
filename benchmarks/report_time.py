"""`cnnkit report` on EfficientNet-Lite0 / flowers128: the HTML report within 60 seconds of training.

Trains a short run (one head epoch, no fine-tuning: the report's cost does not depend on how well the
model learned), then times the whole `cnnkit report RUN` command as a user would run it, Python start-up
and imports included.
Usage: python -m benchmarks.report_time [--image-size 224]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cnnkit
from benchmarks._common import DATASETS, report

TARGET_SECONDS = 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's own (224)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = cnnkit.train(
            DATASETS / "flowers128",
            model="efficientnet_lite0",
            epochs=1,
            fine_tune_epochs=0,
            image_size=args.image_size,
            progress=False,
            out=Path(tmp) / "run",
        )
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnkit.cli.main", "report", str(run.path)], check=True)
        report_seconds = time.perf_counter() - started
        headline = json.loads((run.path / "interpretation_test.json").read_text())["headline"]
        card = json.loads((run.path / "model_card.json").read_text())
        rows = [
            {
                "input_px": card["input_size"],
                "test_images": cnnkit.load_run(run.path).metrics.get("num_test"),
                "test_accuracy": headline["accuracy"],
                "train_s": round(train_seconds, 1),
                "report_s": round(report_seconds, 1),
                "report_mb": round((run.path / "report.html").stat().st_size / 1e6, 2),
                "latency_ms": round(card["latency_ms"], 1),
            }
        ]
    targets = {f"report within {TARGET_SECONDS} s of training": report_seconds <= TARGET_SECONDS}
    return 0 if report("report_time", "cnnkit report on EfficientNet-Lite0 / flowers128", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
