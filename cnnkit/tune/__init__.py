"""Hyperparameter search on the validation split, with Optuna.

The package itself is callable: ``cnnkit.tune(...)`` is :func:`cnnkit.tune.search.tune`. Optuna
and torch load only when it is called.
"""

import importlib
from typing import Any

from cnnkit._callable import make_package_callable


def tune(*args: Any, **kwargs: Any) -> Any:
    return importlib.import_module("cnnkit.tune.search").tune(*args, **kwargs)


tune.__doc__ = "Search training options; see :func:`cnnkit.tune.search.tune`."
__all__ = ["tune"]

make_package_callable(__name__, tune)
