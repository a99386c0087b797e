"""Label-issue candidates: images whose label the rest of the data contradicts.

A logistic regression on the pretrained embeddings predicts every image from a model that never
saw it (seeded, stratified K folds), and cleanlab's confident learning
(:func:`cleanlab.filter.find_label_issues`) picks the images whose given label those out-of-fold
probabilities make unlikely, ranked by the probability of the given label. Seconds, not a training run.
"""

from __future__ import annotations

import warnings

import numpy as np

from cnnkit.check.findings import ImageRef, LabelIssue
from cnnkit.check.inventory import show_progress

FOLDS = 5
# L2 penalty per training image, so that its strength does not depend on the dataset's size (sklearn's
# C = 1 / (penalty x images)); 0.3 is C = 0.001 on flowers128's folds, the best out-of-fold accuracy there.
PENALTY_PER_IMAGE = 0.3


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, *, seed: int = 0, progress: bool = False
) -> np.ndarray:
    """(N, classes) probabilities, each row from a model fitted on the other folds only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    smallest = int(np.bincount(labels, minlength=num_classes).min())
    folds = StratifiedKFold(min(FOLDS, smallest), shuffle=True, random_state=seed)
    probabilities = np.zeros((len(labels), num_classes))
    splits = list(folds.split(features, labels))
    for fitted_on, held_out in show_progress(splits, len(splits), "Out-of-fold predictions", progress):
        regression = LogisticRegression(C=1 / (PENALTY_PER_IMAGE * len(fitted_on)), max_iter=1000)
        model = make_pipeline(StandardScaler(), regression)
        with threadpool_limits(1):  # lbfgs's many small products: 0.6 s a fold on one BLAS thread, 4.2 s on two
            model.fit(features[fitted_on], labels[fitted_on])
        probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probabilities


def find_label_candidates(
    features: np.ndarray, refs: list[ImageRef], classes: list[str], *, seed: int = 0, progress: bool = False
) -> tuple[list[LabelIssue], str | None]:
    """Ranked candidates (most likely mistakes first), and a note when the check could not run."""
    from cleanlab.filter import find_label_issues

    index_of = {name: i for i, name in enumerate(classes)}
    labels = np.array([index_of[ref.label] for ref in refs], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        empty = classes[int(np.argmin(counts))]
        return [], f"label check skipped: class {empty} has fewer than 2 readable images"
    probabilities = out_of_fold_probabilities(features, labels, len(classes), seed=seed, progress=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; the counts above cover them
        ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -1.0  # the suggestion is the likeliest *other* label
    suggested = others.argmax(axis=1)
    issues = [
        LabelIssue(
            image=refs[i],
            suggested=classes[int(suggested[i])],
            confidence=round(float(probabilities[i, suggested[i]]), 4),
            given_probability=round(float(probabilities[i, labels[i]]), 4),
            rank=rank,
        )
        for rank, i in enumerate(ranked.tolist(), 1)
    ]
    return issues, None
