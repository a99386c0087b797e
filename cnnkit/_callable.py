"""Let ``cnnkit.train(...)`` and ``cnnkit.evaluate(...)`` be calls although they are also packages.

Importing ``cnnkit.train.trainer`` binds the *package* ``cnnkit.train`` as an attribute of
``cnnkit``, which would shadow the function of the same name. Giving the package module a
``__call__`` that forwards to the function makes both spellings work.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_package_callable(package_name: str, function: Callable[..., Any]) -> None:
    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    CallablePackage.__call__.__doc__ = function.__doc__
    sys.modules[package_name].__class__ = CallablePackage
