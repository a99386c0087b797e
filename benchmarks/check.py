"""cnnkit check: near-copy recall, what it flags on the real sets, label-noise recall, cold and warm time.

(a) Near copies: photos from hymenoptera and flowers128, each with the five copies of
    :func:`cnnkit.check.copies.write_near_copies` (half size, JPEG 60, 5% crop, brighter, mirrored),
    checked as one dataset. Targets: recall >= 95%, no two distinct photos grouped.
(b) ``cnnkit check`` on flowers128 as a user runs it, in a subprocess with an empty ``CNNKIT_CACHE``
    (cold) and again (warm). Targets: cold < 4 minutes, warm < 90 s on 2 CPU cores. Times vary 2x
    when other processes share the cores; the table says how loaded the machine was.
(c) Duplicate groups flagged on hymenoptera and flowers128 at the default threshold (all written to
    the JSON, for looking at).
(d) Label noise: 5% of flowers128's training labels moved to another class at random (seeded);
    target: at least 70% of the moved files among the first N candidates (N = files moved). The
    clean labels' candidate list is reported too: flowers128 has label mistakes of its own, which
    compete for those N places, so recall is also given among the files the clean run does not flag.

Usage: python -m benchmarks.check [--noise 0.05] [--photos 30]
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
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console

from benchmarks._common import DATASETS, report
from cnnkit.check import CheckFindings, check_dataset
from cnnkit.check.copies import COPY_KINDS, write_near_copies
from cnnkit.data import load_dataset
from cnnkit.data.folders import DatasetSplits, ImageList


def copies_dataset(root: Path, photos: int) -> dict[Path, str]:
    """Class folders ``hymenoptera`` and ``flowers`` of originals and their copies; maps each file to its photo."""
    picture_of: dict[Path, str] = {}
    sources = {"hymenoptera": sorted((DATASETS / "hymenoptera" / "train").glob("*/*.jpg")),
               "flowers": sorted((DATASETS / "flowers128").glob("*/*.jpg"))}  # fmt: skip
    for name, files in sources.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i, source in enumerate(files[:: len(files) // photos][:photos]):
            original = folder / f"p{i}.png"
            Image.open(source).convert("RGB").save(original)
            picture_of[original] = f"{name}{i}"
            for copy in write_near_copies(Image.open(source), folder, f"p{i}").values():
                picture_of[copy] = f"{name}{i}"
    return picture_of


def copy_recall(findings: CheckFindings, picture_of: dict[Path, str]) -> dict[str, Any]:
    """Per kind: how many copies share a group (of the right kind) with their original; distinct photos grouped."""
    linked: set[tuple[str, str]] = set()  # (copy path, kind of the group that holds it with its original)
    distinct_grouped = 0
    for group in findings.duplicates:
        pictures = {picture_of[Path(image.path)] for image in group.images}
        distinct_grouped += len(pictures) > 1
        originals = {image.path for image in group.images if "_" not in Path(image.path).stem}
        if originals:
            linked |= {(image.path, group.kind) for image in group.images}
    row: dict[str, Any] = {"part": "near copies", "photos": len({p for p in picture_of.values()})}
    found = 0
    for kind in COPY_KINDS:
        expected = "flip" if kind == "flipped" else "near"
        copies = [str(path) for path in picture_of if path.stem.endswith(f"_{kind}")]
        hits = sum((path, expected) in linked for path in copies)
        row[f"{kind}_recall"] = hits / len(copies)
        found += hits
    row["recall"] = found / sum("_" in path.stem for path in picture_of)
    row["distinct_groups"] = distinct_grouped
    return row


def timed_cli(data: Path, cache: Path) -> tuple[float, dict[str, Any]]:
    """Seconds for ``cnnkit check DATA --json`` in a fresh process, and its JSON."""
    env = {**os.environ, "CNNKIT_CACHE": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cnnkit.cli.main", "check", str(data), "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - start, json.loads(done.stdout)


def flagged_groups(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """How many groups (and file pairs inside them) each kind has, and the conflicting and leaking ones."""
    row: dict[str, Any] = {"part": f"flagged on {name}"}
    for kind in ("exact", "near", "flip"):
        groups = [g for g in data["duplicates"] if g["kind"] == kind]
        row[f"{kind}_groups"] = len(groups)
        row[f"{kind}_pairs"] = sum(len(g["images"]) * (len(g["images"]) - 1) // 2 for g in groups)
    row["conflicting"] = sum(g["conflicting_labels"] for g in data["duplicates"])
    row["across_splits"] = sum(g["crosses_splits"] for g in data["duplicates"])
    row["outliers"] = len(data["outliers"])
    return row


def with_moved_labels(splits: DatasetSplits, fraction: float, seed: int) -> tuple[DatasetSplits, set[str]]:
    """The same splits with ``fraction`` of the training labels moved to another class, and the moved files."""
    rng = np.random.default_rng(seed)
    labels = np.array(splits.train.labels)
    moved = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    labels[moved] = (labels[moved] + rng.integers(1, len(splits.classes), len(moved))) % len(splits.classes)
    train = ImageList(list(splits.train.sources), labels.tolist())
    noisy = DatasetSplits(splits.name, splits.root, splits.classes, train, splits.val, splits.test, splits.layout)
    return noisy, {splits.train.sources[i] for i in moved}


def label_noise(fraction: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Recall of the moved files among the first N candidates, with and without the clean run's own candidates."""
    splits = load_dataset(DATASETS / "flowers128")
    clean = check_dataset(splits).label_issues
    noisy_splits, moved = with_moved_labels(splits, fraction, seed=0)
    candidates = [issue.image.path for issue in check_dataset(noisy_splits).label_issues]
    already = {issue.image.path for issue in clean}
    fresh = [path for path in candidates if path not in already]
    row = {
        "part": f"label noise {fraction:.0%}",
        "moved": len(moved),
        "candidates": len(candidates),
        "recall_at_n": len(moved & set(candidates[: len(moved)])) / len(moved),
        "recall_all": len(moved & set(candidates)) / len(moved),
        "recall_at_n_new": len(moved & set(fresh[: len(moved)])) / len(moved),
        "clean_candidates": len(clean),
    }
    top_clean = [{"path": i.image.path, "given": i.image.label, "suggested": i.suggested, "confidence": i.confidence}
                 for i in clean[:30]]  # fmt: skip
    return row, top_clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--photos", type=int, default=30, help="originals from each dataset in part (a)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    say = Console(stderr=True).log
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        os.environ["CNNKIT_CACHE"] = str(cache)
        load = os.getloadavg()[0]
        cold, _ = timed_cli(DATASETS / "flowers128", cache)
        say(f"cold check of flowers128: {cold:.0f} s")
        warm, flowers = timed_cli(DATASETS / "flowers128", cache)
        say(f"warm: {warm:.0f} s")
        rows.append({"part": "flowers128 CLI", "cold_s": round(cold, 1), "warm_s": round(warm, 1),
                     "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)})  # fmt: skip
        hymenoptera = check_dataset(DATASETS / "hymenoptera").to_dict()
        rows += [flagged_groups("hymenoptera", hymenoptera), flagged_groups("flowers128", flowers)]
        say("hymenoptera checked")
        picture_of = copies_dataset(Path(tmp) / "copies", args.photos)
        rows.append(copy_recall(check_dataset(Path(tmp) / "copies"), picture_of))
        say("near copies checked")
        noise_row, top_clean = label_noise(args.noise)
        rows.append(noise_row)
    copies, timing = rows[-2], rows[0]
    targets = {
        f"near-copy recall >= 95% (got {copies['recall']:.1%})": copies["recall"] >= 0.95,
        f"no distinct photos grouped (got {copies['distinct_groups']})": copies["distinct_groups"] == 0,
        f"label-noise recall at N >= 70% (got {noise_row['recall_at_n']:.1%})": noise_row["recall_at_n"] >= 0.70,
        f"warm < 90 s (got {timing['warm_s']} s)": timing["warm_s"] < 90,
        f"cold < 240 s (got {timing['cold_s']} s)": timing["cold_s"] < 240,
    }
    table = [
        {"part": row["part"], "measure": key, "value": value}
        for row in rows
        for key, value in row.items()
        if key != "part"
    ]
    ok = report("check", "cnnkit check", table, targets)
    details = {"flowers128": flowers["duplicates"], "hymenoptera": hymenoptera["duplicates"], "clean_top": top_clean}
    (Path(__file__).resolve().parent / "results" / "check-findings.json").write_text(json.dumps(details, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
