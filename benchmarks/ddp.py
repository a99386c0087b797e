"""Data-parallel training: EfficientNet-Lite0 (pretrained, the default recipe) on hymenoptera with 1 and 2
processes (gloo on CPUs). Target: validation accuracy within 1.5 points. Times are printed (two processes
on two cores are not expected to be faster), and the same 2-process run is tried under ``torchrun``.

Each run has its own feature cache folder, so no run reuses another's extraction.

Usage: python -m benchmarks.ddp [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import DATASETS, report


def run(launcher: list[str], data: str, out: Path, devices: int, extra: list[str]) -> dict:
    """One ``cnnkit train`` under ``launcher``: its metrics and wall time, or what went wrong."""
    command = [*launcher, "train", data, "--model", "efficientnet_lite0", "--devices", str(devices),
               "--out", str(out / "run"), "--json", *extra]  # fmt: skip
    started = time.perf_counter()
    env = {**__import__("os").environ, "CNNKIT_CACHE": str(out / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        return {"seconds": seconds, "error": (result.stderr.strip().splitlines() or ["?"])[-1][:100]}
    return {"seconds": seconds, **json.loads(result.stdout[result.stdout.index("{") :])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 head + 1 fine-tuning epochs: checks it works")
    args = parser.parse_args()
    extra = ["--epochs", "3", "--fine-tune-epochs", "1"] if args.quick else []
    data = str(DATASETS / "hymenoptera")
    cnnkit = [sys.executable, "-m", "cnnkit"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "cnnkit"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, launcher, devices in (("1 process", cnnkit, 1), ("2 processes (ddp)", cnnkit, 2),
                                        ("2 processes (torchrun)", torchrun, 2)):  # fmt: skip
            results[name] = run(launcher, data, Path(tmp) / name.replace(" ", "_"), devices, extra)
    rows = [
        {"run": name, "seconds": r["seconds"], "val_accuracy": r.get("val_accuracy", ""),
         "test_accuracy": r.get("test_accuracy", ""), "best": f"{r.get('best_stage', '')} {r.get('best_epoch', '')}",
         "error": r.get("error", "")}
        for name, r in results.items()
    ]  # fmt: skip
    one, two = results["1 process"], results["2 processes (ddp)"]
    both = "val_accuracy" in one and "val_accuracy" in two
    gap = abs(one["val_accuracy"] - two["val_accuracy"]) if both else float("inf")
    print(f"validation accuracy gap, 1 vs 2 processes: {gap * 100:.2f} points")
    targets = {"validation accuracy of 2 processes within 1.5 points of 1": gap <= 0.015}
    return 0 if report("ddp", "EfficientNet-Lite0 on hymenoptera, 1 and 2 processes", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
