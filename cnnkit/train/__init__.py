"""Training: the Lightning module, callbacks, the plan of stages and the ``train`` entry point.

The package itself is callable: ``cnnkit.train(...)`` is :func:`cnnkit.train.trainer.train`. It
loads torch and Lightning only when called, so :mod:`cnnkit.train.opening` can claim a run folder
first.
"""

import importlib
from typing import Any

from cnnkit._callable import make_package_callable


def train(*args: Any, **kwargs: Any) -> Any:
    return importlib.import_module("cnnkit.train.trainer").train(*args, **kwargs)


train.__doc__ = "Train a classifier; see :func:`cnnkit.train.trainer.train`."
__all__ = ["train"]

make_package_callable(__name__, train)
