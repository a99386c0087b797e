"""Atomic file writing: a crash or Ctrl-C never leaves a half-written run file behind.

Every file is written to a temporary sibling first and moved into place with ``os.replace``,
which is atomic on POSIX and Windows when both paths are on the same filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cnnkit.crashpoints import crash_point
from cnnkit.errors import CnnkitError

if TYPE_CHECKING:
    import torch


WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free some space or write somewhere else",
    errno.EFBIG: "the file is too large for this file system; write somewhere else",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter folder or name",
}


def unwritable(path: str | Path, exc: BaseException, code: int | None = None) -> CnnkitError:
    """One line for a file that cannot be written, naming it and what to do (``code``: an errno to assume)."""
    reason = WRITE_FAILURES.get(code if code is not None else getattr(exc, "errno", None), str(exc))
    return CnnkitError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    A file-system failure (disk full, read-only, no permission, path too long) is a one-line
    :class:`CnnkitError` naming ``path``; the file under its real name is then the old one, or absent.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        raise unwritable(path, exc) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); run files are meant to be shared
        _fsync(tmp)  # the data reaches the disk before the name does, so a power cut leaves old or new
        crash_point("write")
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        raise unwritable(path, exc) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_yaml(path: str | Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_yaml(path: str | Path) -> Any:
    """YAML as plain data; tags that would build Python objects are refused with one line."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise CnnkitError(f"{path} is not valid YAML for cnnkit ({problem}); fix or replace the file") from exc


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    module_or_state: torch.nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Save weights as safetensors (never pickle), atomically; ``metadata`` goes into the file's header."""
    from safetensors.torch import save_file

    state = module_or_state if isinstance(module_or_state, dict) else module_or_state.state_dict()
    contiguous = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata=metadata)
        except Exception as exc:  # safetensors reports a full disk as its own error, not an OSError
            if "No space left" not in str(exc):
                raise
            raise unwritable(path, exc, errno.ENOSPC) from exc


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def save_figure(fig: Any, path: str | Path, dpi: int = 110, metadata: dict[str, str] | None = None) -> None:
    """Save a matplotlib figure atomically and close it; ``metadata`` goes into the file (PNG text chunks)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png", metadata=metadata)
    plt.close(fig)
