"""Package attributes imported on first use, so that importing a package does not load torch."""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(package: str, exports: dict[str, str], name: str) -> Any:
    """``exports[name]`` is the module that defines ``name``; import it now and return the attribute."""
    if name not in exports:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(exports[name]), name)
