"""Streaming shards: shard mnist-png (70,000 PNGs) and train LeNet-5 from the shards and from the folder with the
RAM image cache. Targets: the same test accuracy within 0.3 points, and the training process's peak RSS (VmHWM)
at least 3x lower from shards; the shard-writing speed is printed in images/s.

Each training runs as its own ``cnnkit train`` process, so its peak RSS is its own (``os.wait4``). A third
process trains the built-in ``digits`` (1,797 tiny images) for one epoch: its peak is what any training process
holds before the data counts (interpreter, torch, Lightning, the model), and the rows show each run above it.

Usage: python -m benchmarks.streaming [--epochs 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import DATASETS, report
from cnnkit.data.shards import shard


def train_process(data: str, out: Path, epochs: int, *options: str) -> dict:
    """``cnnkit train`` in a child process: its metrics, wall time and peak resident memory."""
    recipe = ["--model", "lenet5", "--epochs", str(epochs), "--batch-size", "64", "--lr", "5e-4", "--augment", "none"]
    command = [sys.executable, "-m", "cnnkit", "train", data, *recipe, "--out", str(out), "--json", *options]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"training failed ({status}): {' '.join(command)}")
    metrics = json.loads(output[output.index("{") :])
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": usage.ru_maxrss / 1024, **metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 epoch: checks that it works, not the targets")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    data = str(DATASETS / "mnist-png")
    with tempfile.TemporaryDirectory() as tmp:
        summary = shard(data, f"{tmp}/shards", "64MB")
        print(f"sharded {sum(summary.counts.values())} images in {summary.seconds:.0f} s", flush=True)
        from_shards = train_process(f"{tmp}/shards", Path(tmp) / "shards-run", epochs)
        print(f"from shards: {from_shards}", flush=True)
        from_folder = train_process(data, Path(tmp) / "folder-run", epochs, "--image-cache", "ram")
        print(f"from the folder: {from_folder}", flush=True)
        floor = train_process("digits", Path(tmp) / "floor-run", 1)["peak_rss_mb"]
    rows = [
        {"run": "shard writing", "images": sum(summary.counts.values()), "shards": summary.shards,
         "MB": round(summary.bytes / 1e6, 1), "seconds": round(summary.seconds, 1),
         "images/s": round(summary.images_per_second), "test_accuracy": "", "peak_rss_mb": "", "above_floor_mb": ""},
    ]  # fmt: skip
    for name, result in (("train from shards", from_shards), ("train from folder, RAM cache", from_folder)):
        rows.append({"run": name, "images": result["num_train"], "shards": "", "MB": "", "seconds": result["seconds"],
                     "images/s": "", "test_accuracy": result["test_accuracy"],
                     "peak_rss_mb": round(result["peak_rss_mb"]),
                     "above_floor_mb": round(result["peak_rss_mb"] - floor)})  # fmt: skip
    rows.append({"run": "floor: digits, 1 epoch", "images": 1797, "shards": "", "MB": "", "seconds": "",
                 "images/s": "", "test_accuracy": "", "peak_rss_mb": round(floor), "above_floor_mb": 0})  # fmt: skip
    gap = abs(from_shards["test_accuracy"] - from_folder["test_accuracy"])
    ratio = from_folder["peak_rss_mb"] / from_shards["peak_rss_mb"]
    print(f"accuracy gap {gap * 100:.2f} points; peak RSS folder / shards = {ratio:.2f}x; {epochs} epochs; "
          f"a training process holds {floor:.0f} MB before its data")  # fmt: skip
    targets = {
        "test accuracy from shards within 0.3 points of the folder run": gap <= 0.003,
        "peak RSS from shards at least 3x lower than with the RAM cache": ratio >= 3,
    }
    return 0 if report("streaming", f"LeNet-5 on mnist-png, {epochs} epochs", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
