"""Find downloaded ImageNet weights on this machine, or say in one line how to get them.

torchvision and timm download weights on first use, which hangs or fails on an offline machine.
cnnkit only reads what is already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or the
Hugging Face cache, and downloads only when ``CNNKIT_DOWNLOAD=1`` says a network may be used.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from cnnkit.errors import CnnkitError

DOWNLOAD_ENV = "CNNKIT_DOWNLOAD"
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def downloads_allowed() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "") == "1"


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` keeps its file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _hugging_face_file(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in _HF_WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def locate_weights(library: str, url: str | None, hf_repo: str | None = None) -> str | None:
    """Where ``library`` (torchvision or timm) would take pretrained weights from now, or ``None`` if nowhere."""
    found = _hugging_face_file(hf_repo) if hf_repo else None
    if found is None and url and hub_checkpoint_path(url).is_file():
        found = hub_checkpoint_path(url)
    if found is not None:
        return f"{library} cache {found}"
    return f"{library} download" if downloads_allowed() else None


def find_cached_weights(model_name: str, url: str | None, hf_repo: str | None = None) -> Path | None:
    """The cached weight file, or ``None`` when it is missing but downloading is allowed.

    Raises :class:`CnnkitError` when the weights are missing and downloads are not allowed.
    """
    if hf_repo:
        found = _hugging_face_file(hf_repo)
        if found is not None:
            return found
    if url and hub_checkpoint_path(url).is_file():
        return hub_checkpoint_path(url)
    if downloads_allowed():
        return None
    where = hub_checkpoint_path(url) if url else f"the Hugging Face cache ({hf_repo})"
    raise CnnkitError(
        f"pretrained weights for {model_name} are not on this machine (looked for {where}); "
        f"run once with network access and {DOWNLOAD_ENV}=1 to cache them, "
        "or pass weights=PATH (--weights PATH) with a safetensors file or state dict"
    )
