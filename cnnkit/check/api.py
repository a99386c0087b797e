"""The three entry points: the full check, the cheap one training can afford, and dropping leaked copies.

``check_dataset`` reads every file once, embeds the readable ones with a pretrained network (through
the feature cache), and runs the duplicate, label and outlier checks on those embeddings.
``quick_check`` needs no model: it hashes decoded pixels only, so training can run it on every start.
``dedupe`` removes from val and test the copies of pictures that an earlier split already holds.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cnnkit.check.duplicates import DEFAULT_SIMILARITY, NearCopyRule, exact_groups, find_duplicates
from cnnkit.check.embeddings import DEFAULT_MODEL, embed_files, unit_rows
from cnnkit.check.findings import SPLIT_ORDER, CheckFindings, ImageRef
from cnnkit.check.inventory import FileFacts, build_inventory, image_refs, scan_files
from cnnkit.check.labels import find_label_candidates
from cnnkit.check.outliers import embedding_outliers, pixel_outliers
from cnnkit.data.datasets import load_dataset
from cnnkit.data.folders import DatasetSplits
from cnnkit.errors import CnnkitError

FULL_CHECKS = ["inventory", "exact duplicates", "near duplicates", "label issues", "outliers"]
QUICK_CHECKS = ["exact duplicates across splits", "conflicting labels"]


def _empty_findings(splits: DatasetSplits, facts: list[FileFacts], checks: list[str]) -> CheckFindings:
    return CheckFindings(
        splits.name, splits.root, splits.layout, list(splits.classes), checks, build_inventory(splits, facts),
        notes=list(splits.notes),
    )  # fmt: skip


def check_dataset(
    data: str | Path | DatasetSplits,
    model: str = DEFAULT_MODEL,
    *,
    val_split: float = 0.15,
    test_split: float = 0.15,
    seed: int = 0,
    similarity: float = DEFAULT_SIMILARITY,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = False,
) -> CheckFindings:
    """Every check on a class-per-folder dataset, split exactly as ``cnnkit train`` splits it (same defaults).

    ``similarity`` is the embedding cosine a near-copy candidate needs at the loosest hash match
    (see :class:`~cnnkit.check.duplicates.NearCopyRule`); raise it for fewer, surer pairs.
    """
    if not 0 < similarity <= 1:
        raise CnnkitError(f"--similarity must be in (0, 1], not {similarity}")
    clock = time.perf_counter()
    splits = data if isinstance(data, DatasetSplits) else load_dataset(data, val_split, test_split, seed)
    facts = scan_files(image_refs(splits), perceptual=True, progress=progress)
    findings = _empty_findings(splits, facts, FULL_CHECKS)
    findings.model = model
    findings.settings = {"similarity": similarity, "seed": seed, "val_split": val_split, "test_split": test_split}
    findings.seconds["read"] = round(time.perf_counter() - clock, 2)
    readable = [fact for fact in facts if fact.readable]
    if len(readable) < 2:
        findings.duplicates = exact_groups(facts)
        findings.notes.append("fewer than 2 readable images: no near-duplicate, label or outlier check")
        return findings
    clock = time.perf_counter()
    features, hit = embed_files([f.ref.path for f in readable], model, device=device, precision=precision,
                                progress=progress)  # fmt: skip
    findings.seconds["embed"] = round(time.perf_counter() - clock, 2)
    findings.settings["embeddings_from_cache"] = hit
    _model_checks(findings, facts, features, similarity, seed, progress)
    return findings


def _model_checks(
    findings: CheckFindings, facts: list[FileFacts], features: np.ndarray, similarity: float, seed: int, progress: bool
) -> None:
    """The checks that compare embeddings: near duplicates, label issues, outliers (timed one by one)."""
    unit = unit_rows(features)
    clock = time.perf_counter()
    findings.duplicates = find_duplicates(facts, unit, NearCopyRule(similarity))
    findings.seconds["duplicates"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    readable_refs = [fact.ref for fact in facts if fact.readable]
    findings.label_issues, note = find_label_candidates(features, readable_refs, findings.classes, seed=seed,
                                                        progress=progress)  # fmt: skip
    if note:
        findings.notes.append(note)
    findings.seconds["labels"] = round(time.perf_counter() - clock, 2)
    findings.outliers = embedding_outliers(facts, unit, findings.classes) + pixel_outliers(facts)


def quick_check(splits: DatasetSplits, *, progress: bool = False) -> CheckFindings:
    """Only what needs no model: pictures (equal decoded pixels) shared between splits or between classes.

    Meant for training to run before it starts; ``findings.warning`` is the one line to print
    (None when nothing was found), and it names the command that shows the rest.
    """
    clock = time.perf_counter()
    facts = scan_files(image_refs(splits), perceptual=False, progress=progress)
    findings = _empty_findings(splits, facts, QUICK_CHECKS)
    findings.duplicates = [g for g in exact_groups(facts) if g.crosses_splits or g.conflicting_labels]
    findings.seconds["read"] = round(time.perf_counter() - clock, 2)
    return findings


def dedupe(splits: DatasetSplits, findings: CheckFindings) -> tuple[DatasetSplits, list[ImageRef]]:
    """``splits`` without the val and test files whose picture an earlier split (train, then val) also holds.

    Membership is read from ``splits`` itself, so findings from another seed or split still drop
    only what leaks here. Returns the new splits and the files it dropped (with the split they left).
    """
    split_of = {
        source: split
        for split in SPLIT_ORDER
        if (images := getattr(splits, split)) is not None
        for source in images.sources
    }
    dropped: list[ImageRef] = []
    for group in findings.duplicates:
        present = [(SPLIT_ORDER.index(split_of[image.path]), image) for image in group.images if image.path in split_of]
        if not present:
            continue
        earliest = min(order for order, _ in present)
        dropped += [replace(image, split=SPLIT_ORDER[order]) for order, image in present if order > earliest]
    dropped = sorted(set(dropped), key=lambda ref: (SPLIT_ORDER.index(ref.split), ref.path))
    gone = {ref.path for ref in dropped}
    changes = {}
    for split in ("val", "test"):
        images = getattr(splits, split)
        if images is None:
            continue
        kept = [i for i, source in enumerate(images.sources) if source not in gone]
        if not kept:
            raise CnnkitError(
                f"every {split} image of {splits.root} also appears in an earlier split; re-split the data"
            )
        changes[split] = images.subset(kept)
    note = f"dropped {len(dropped)} val/test file(s) whose picture an earlier split also holds"
    return replace(splits, **changes, notes=[*splits.notes, note] if dropped else list(splits.notes)), dropped
