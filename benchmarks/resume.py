"""Resume after kill -9: EfficientNet-Lite0 on hymenoptera, killed in fine-tuning and continued with --resume.

Runs the CLI three times, one after the other: an uninterrupted run; the same run killed with SIGKILL
right after the checkpoint of fine-tuning epoch ``--kill-epoch``; and ``cnnkit train --resume`` on the
killed folder. The resumed run must end within 0.5 points of the uninterrupted one (same seed), and
the time it saves is what starting over would have cost minus what resuming cost.
Also times how fast a second training into a folder in use is refused.
Usage: python -m benchmarks.resume [--kill-epoch 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import DATASETS, report
from cnnkit.run import load_run

COMMAND = [sys.executable, "-m", "cnnkit.cli.main", "train"]


def timed(args: list[str], crash: str | None = None) -> tuple[float, int]:
    env = {**os.environ, **({"CNNKIT_CRASH_AT": crash} if crash else {})}
    started = time.perf_counter()
    done = subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def refusal_seconds(busy: Path) -> float:
    """Seconds until a second training into a folder in use exits (status 2)."""
    seconds, code = timed(["digits", "--model", "lenet5", "--out", str(busy)])
    assert code == 2, code
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kill-epoch", type=int, default=3, help="fine-tuning epoch after whose checkpoint to kill")
    args = parser.parse_args()
    data = ["--model", "efficientnet_lite0", "--seed", "0", "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        whole_s, _ = timed([str(DATASETS / "hymenoptera"), *data, "--out", f"{tmp}/whole"])
        killed_s, code = timed(
            [str(DATASETS / "hymenoptera"), *data, "--out", f"{tmp}/killed"],
            crash=f"checkpointed-fine_tune:{args.kill_epoch}",
        )
        assert code == -9, f"the run was not killed (exit {code})"
        (Path(tmp) / "busy").mkdir()
        (Path(tmp) / "busy" / ".lock").write_text(f'{{"pid": {os.getpid()}, "host": "{os.uname().nodename}"}}')
        refused_s = refusal_seconds(Path(tmp) / "busy")
        resume_s, _ = timed(["--resume", f"{tmp}/killed", "--json"])
        whole, resumed = load_run(f"{tmp}/whole"), load_run(f"{tmp}/killed")
        whole_epochs, resumed_epochs = len(whole.history), len(resumed.history)  # read before the folder goes
    rows = [
        {"run": "uninterrupted", "seconds": round(whole_s, 1), "val_accuracy": whole.metrics["val_accuracy"],
         "epochs": whole_epochs},
        {"run": f"killed after fine-tune epoch {args.kill_epoch}", "seconds": round(killed_s, 1), "val_accuracy": "-",
         "epochs": "-"},
        {"run": "resumed", "seconds": round(resume_s, 1), "val_accuracy": resumed.metrics["val_accuracy"],
         "epochs": resumed_epochs},
        {"run": "saved by resuming (restart - resume)", "seconds": round(whole_s - resume_s, 1), "val_accuracy": "-",
         "epochs": "-"},
        {"run": "second training into a folder in use", "seconds": round(refused_s, 2), "val_accuracy": "-",
         "epochs": "-"},
    ]  # fmt: skip
    gap = abs(whole.metrics["val_accuracy"] - resumed.metrics["val_accuracy"])
    targets = {
        f"resumed within 0.5 points of uninterrupted (gap {gap:.2%})": gap <= 0.005,
        f"refused within 2 s ({refused_s:.2f} s)": refused_s < 2,
    }
    return 0 if report("resume", "Resume after kill -9 (hymenoptera, EfficientNet-Lite0)", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
