"""``cnnkit shard DATA OUT``: write a dataset once as streaming shards (the work is :mod:`cnnkit.data.shards`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnkit.cli.output import JsonOption, console, print_json
from cnnkit.config import TrainConfig


def shard(
    data: Annotated[str, typer.Argument(help="A folder of class sub-folders (flat, or train/val/test folders).")],
    out: Annotated[Path, typer.Argument(help="A new folder for the shards and their shards.json.")],
    shard_size: Annotated[str, typer.Option(help="About this many bytes per shard: 256MB, 1GB, 64MiB.")] = "256MB",
    val_split: Annotated[float, typer.Option(help="Validation fraction when the data has no val folder.")] = 0.15,
    test_split: Annotated[float, typer.Option(help="Test fraction for a flat folder.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the split (as in 'cnnkit train').")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Write the data once as WebDataset tar shards that 'cnnkit train OUT' streams with bounded memory."""
    TrainConfig(val_split=val_split, test_split=test_split, seed=seed)  # the same checks as 'cnnkit train'
    from cnnkit.data.shards import shard as write
    from cnnkit.progress import tracked

    track = None if json_output else lambda items, total, step: tracked(items, total, step, unit="images")
    summary = write(data, out, shard_size, val_split=val_split, test_split=test_split, seed=seed, track=track)
    counts = ", ".join(f"{name} {count}" for name, count in summary.counts.items())
    if json_output:
        print_json({"out": str(summary.out), "counts": summary.counts, "shards": summary.shards, "bytes": summary.bytes,
                    "seconds": round(summary.seconds, 2), "images_per_second": round(summary.images_per_second, 1),
                    "content_sha256": summary.content_sha256, "skipped": summary.skipped})  # fmt: skip
        return
    console.print(
        f"wrote {summary.shards} shards ({summary.bytes / 1e6:.1f} MB; {counts}) to {summary.out} "
        f"in {summary.seconds:.1f} s, {summary.images_per_second:.0f} images/s",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if summary.skipped:
        console.print(f"left out {len(summary.skipped)} unreadable file(s); see shards.json", highlight=False)
    console.print(f"next: cnnkit train {summary.out}", highlight=False)
