"""Training: the Lightning module, callbacks, the run folder and the ``train`` entry point.

The package itself is callable: ``cnnkit.train(...)`` is :func:`cnnkit.train.trainer.train`.
"""

from cnnkit._callable import make_package_callable
from cnnkit.train.run import Run, load_run
from cnnkit.train.trainer import train

__all__ = ["Run", "load_run", "train"]

make_package_callable(__name__, train)
