"""Dataset health before training: ``cnnkit check DATA``.

What it finds: counts, sizes and colour modes, unreadable and oversized files, class imbalance;
exact and near duplicates (within a class, across classes, across splits); label-issue candidates
from out-of-fold predictions on pretrained embeddings; outliers. Everything runs offline and is
seeded. Training calls :func:`quick_check` (no model) and may :func:`dedupe` its splits.
"""

from cnnkit.check.api import check_dataset, dedupe, quick_check
from cnnkit.check.findings import (
    CheckFindings,
    DuplicateGroup,
    ImageRef,
    Imbalance,
    Inventory,
    LabelIssue,
    Outlier,
    OversizedFile,
    UnreadableFile,
)
from cnnkit.check.html import write_html

__all__ = [
    "CheckFindings",
    "DuplicateGroup",
    "ImageRef",
    "Imbalance",
    "Inventory",
    "LabelIssue",
    "Outlier",
    "OversizedFile",
    "UnreadableFile",
    "check_dataset",
    "dedupe",
    "quick_check",
    "write_html",
]
