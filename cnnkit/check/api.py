"""The three entry points: the full check, the cheap one training can afford, and dropping leaked copies.

``check_dataset`` reads every file once, embeds the readable ones with a pretrained network (through
the feature cache), and runs the duplicate, label and outlier checks on those embeddings.
``quick_check`` needs no model and decodes nothing: it finds the files repeated across classes or
splits from their bytes (:mod:`cnnkit.data.duplicates`, which training runs on every start).
``dedupe`` removes from val and test the copies of pictures that an earlier split already holds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cnnkit.check.duplicates import DEFAULT_SIMILARITY, NearCopyRule, exact_groups, find_duplicates
from cnnkit.check.embeddings import DEFAULT_MODEL, embed_files, unit_rows
from cnnkit.check.findings import CheckFindings, DuplicateGroup, ImageRef
from cnnkit.check.inventory import FileFacts, build_inventory, scan_files
from cnnkit.check.labels import find_label_candidates
from cnnkit.check.outliers import embedding_outliers, pixel_outliers
from cnnkit.data.datasets import load_dataset
from cnnkit.data.duplicates import conflicting_labels, crosses_splits, dataset_files, drop_copies, identical_files
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
    facts = scan_files(dataset_files(splits), progress=progress)
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


def quick_check(splits: DatasetSplits) -> CheckFindings:
    """Only what needs no model and no decoding: files repeated between splits or between classes.

    Training runs the same check (:func:`cnnkit.data.duplicates.screen_duplicates`); ``findings.warning``
    is the line it prints. The inventory holds counts and class imbalance only (sizes need decoding).
    """
    clock = time.perf_counter()
    groups = identical_files(dataset_files(splits))
    findings = _empty_findings(splits, [], QUICK_CHECKS)
    findings.duplicates = [
        DuplicateGroup("exact", group) for group in groups if crosses_splits(group) or conflicting_labels(group)
    ]
    findings.seconds["read"] = round(time.perf_counter() - clock, 2)
    return findings


def dedupe(splits: DatasetSplits, findings: CheckFindings) -> tuple[DatasetSplits, list[ImageRef]]:
    """``splits`` without the val and test files whose picture (exact or near copy) an earlier split also holds.

    Returns the new splits and the files it dropped (with the split they left); see
    :func:`cnnkit.data.duplicates.drop_copies`.
    """
    return drop_copies(splits, [group.images for group in findings.duplicates])
