"""Where cnnkit keeps reusable caches, and how a cache is named so it is never stale.

A cache file is named after a digest of everything that determines its content: the settings
that produced it and each source file's path, size and modification time. Changing any setting
or touching any image gives a new name, so an old cache is simply never found again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """``$CNNKIT_CACHE``, else ``~/.cache/cnnkit``."""
    return Path(os.environ.get("CNNKIT_CACHE", Path.home() / ".cache" / "cnnkit"))


def cache_key(settings: dict[str, Any], sources: list[str]) -> str:
    """A digest of the settings and of each source file's identity (path, size, mtime)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for source in sources:
        try:
            stat = os.stat(source)
            digest.update(f"{source}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:  # built-in data: the name is its identity
            digest.update(f"{source}\n".encode())
    return digest.hexdigest()[:24]
