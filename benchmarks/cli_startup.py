"""CLI start-up: how long the commands a newcomer types first take to answer, in fresh processes.

Each command runs 5 times, one after the other; the median counts. The target is 1 s per command
(torch alone takes several seconds to import, so this holds only while parsing imports nothing
heavy). The bare interpreter's start-up is measured in the same run as the baseline.
Usage: python -m benchmarks.cli_startup [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from benchmarks._common import report

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "cnnkit --help": [sys.executable, "-m", "cnnkit.cli.main", "--help"],
    "cnnkit --version": [sys.executable, "-m", "cnnkit.cli.main", "--version"],
    "cnnkit models": [sys.executable, "-m", "cnnkit.cli.main", "models"],
    "cnnkit train --nonsense": [sys.executable, "-m", "cnnkit.cli.main", "train", "--nonsense"],
}
TARGET_SECONDS = 1.0


def median_seconds(command: list[str], repeat: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command; the median counts")
    args = parser.parse_args()
    seconds = {name: median_seconds(command, args.repeat) for name, command in COMMANDS.items()}
    baseline = seconds["python -c pass (baseline)"]
    rows = [
        {"command": name, "median_s": round(value, 3), "x_interpreter": round(value / baseline, 1)}
        for name, value in seconds.items()
    ]
    targets = {
        f"{name} under {TARGET_SECONDS:.0f} s ({value:.2f} s)": value < TARGET_SECONDS
        for name, value in seconds.items()
        if not name.endswith("(baseline)")
    }
    return 0 if report("cli_startup", f"CLI start-up, median of {args.repeat} runs", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
