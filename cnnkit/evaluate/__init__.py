"""Evaluation: metrics, confusion matrix and training-curve plots.

The package itself is callable: ``cnnkit.evaluate(...)`` is :func:`cnnkit.evaluate.metrics.evaluate`.
"""

from cnnkit._callable import make_package_callable
from cnnkit.evaluate.metrics import Evaluation, evaluate, score
from cnnkit.evaluate.plots import plot_confusion_matrix, plot_curves

__all__ = ["Evaluation", "evaluate", "plot_confusion_matrix", "plot_curves", "score"]

make_package_callable(__name__, evaluate)
