"""Feature caching: what a frozen part of the network computes, computed once per image.

While the base is frozen, every epoch would push every image through it again: on a CPU that is
nearly all of the training time. Instead the frozen part's output is computed once, for
``views`` augmented versions of each training image, and training runs on those outputs; each
epoch draws one of the views per image, so augmentation still does its job. The frozen part is
the whole base for the head stage (pooled vectors) or, when fine-tuning trains only the top
blocks, everything below them (activation maps, stored as float16), which serves both stages.

Caches are stored under ``$CNNKIT_CACHE`` (default ``~/.cache/cnnkit``), named by
:func:`cnnkit.cache.cache_key` over the model, its weights, where the cut is, preprocessing,
augmentation, number of views, seed, precision and the image files, so a re-run with the same
settings reuses the cache and a run with any other setting never does. They are read into
memory, or memory-mapped when large.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cnnkit.cache import cache_key
from cnnkit.crashpoints import crash_point
from cnnkit.fileio import atomic_path
from cnnkit.progress import tracked
from cnnkit.runtime import autocast
from cnnkit.train.distributed import Processes, current

SPILL_BYTES = 2 * 1024**3  # caches larger than this stay memory-mapped instead of being read into RAM


def weights_fingerprint(module: nn.Module) -> str:
    """Cheap digest of a module's weights, so a cache never outlives the weights it came from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().float().flatten()
        digest.update(name.encode())
        digest.update(np.asarray([flat.numel(), flat.sum().item(), flat[:: max(1, flat.numel() // 64)].sum().item()]))
    return digest.hexdigest()[:16]


def view_rows(views: torch.Tensor) -> torch.Tensor:
    """Where each image's views sit in a cache: (N, most views) row numbers, -1 past an image's own count.

    A cache holds one row per (view, image), laid out view by view: all images' first views, then
    the second views of the images that have two or more, and so on. With the same number of views
    for every image that is simply ``views`` blocks of N rows.
    """
    present = _view_mask(views)
    rows = torch.full(present.shape, -1, dtype=torch.long)
    rows[present] = torch.arange(int(present.sum()))
    return rows.T.contiguous()


def _view_mask(views: torch.Tensor) -> torch.Tensor:
    """(view, image) booleans: True where the image has that view."""
    return torch.arange(int(views.max()))[:, None] < views[None, :]


def _as_views(views: int | torch.Tensor, count: int) -> torch.Tensor:
    return torch.full((count,), views, dtype=torch.long) if isinstance(views, int) else views.long()


@torch.inference_mode()
def extract_features(
    module: nn.Module,
    images: torch.Tensor,
    transform,
    views: int | torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    precision: str,
    seed: int,
    out: np.ndarray | None = None,
    progress: bool = False,
    share: tuple[int, int] = (0, 1),
) -> np.ndarray:
    """``module``'s output for transformed copies of uint8 images: shape (rows, ...), laid out as :func:`view_rows`.

    ``views`` is the number of copies of every image, or one number per image. ``out`` may be a
    preallocated (memory-mapped) array to fill, of any float dtype. The seed fixes which random
    augmentations each copy gets. ``progress`` shows a bar with ETA on stderr (plain lines in a log).
    ``share`` = (rank, world): run the module only on every ``world``-th batch from ``rank`` (the
    other rows keep what ``out`` held); every batch is still augmented, so each row gets the same
    augmentation whatever the number of ranks.
    """
    module.eval()
    views = _as_views(views, len(images))
    image_of_row = _view_mask(views).nonzero()[:, 1]  # in the cache's row order, view by view
    result = out
    starts = range(0, len(image_of_row), batch_size)
    if progress:
        most = int(views.max())
        description = f"Caching {len(images)} images x {most if int(views.min()) == most else f'up to {most}'} views"
        starts = tracked(starts, len(starts), description)
    with torch.random.fork_rng(devices=[]):  # a cache hit must leave the global RNG as a miss does
        torch.manual_seed(seed)
        for number, start in enumerate(starts):
            crash_point("extract")
            batch = transform(images[image_of_row[start : start + batch_size]])  # each row its own random view
            if number % share[1] != share[0]:
                continue  # another rank's batch
            batch = batch.to(device).contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                outputs = module(batch).float().cpu().numpy()
            if result is None:
                result = np.empty((len(image_of_row), *outputs.shape[1:]), dtype=np.float32)
            result[start : start + len(outputs)] = outputs
    return result


@torch.inference_mode()
def apply_to_cache(
    module: nn.Module, cache: np.ndarray, *, batch_size: int, device: torch.device, precision: str
) -> np.ndarray:
    """Run ``module`` over every cached row: (rows, ...) -> (rows, F) float32.

    Turns cached activation maps into the pooled vectors the head stage trains on, in a fraction
    of the time the whole base would take.
    """
    module.eval()
    outputs = []
    for start in range(0, len(cache), batch_size):
        batch = torch.from_numpy(np.asarray(cache[start : start + batch_size], dtype=np.float32)).to(device)
        with autocast(device, precision):
            outputs.append(module(batch.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(outputs).numpy()


def cached_features(
    module: nn.Module,
    images: torch.Tensor,
    transform,
    views: int | torch.Tensor,
    *,
    settings: dict[str, Any],
    sources: list[str],
    cache_dir: Path,
    batch_size: int,
    device: torch.device,
    precision: str,
    seed: int,
    dtype: type = np.float32,
    progress: bool = False,
) -> tuple[np.ndarray, bool]:
    """``module``'s outputs from the disk cache when a matching one exists, else computed and stored there.

    Returns the array (in RAM, or memory-mapped when over :data:`SPILL_BYTES`) and whether the
    cache was hit.
    """
    views = _as_views(views, len(images))
    settings = {**settings, "views": views.tolist(), "seed": seed, "dtype": np.dtype(dtype).name}
    key = cache_key({**settings, "weights": weights_fingerprint(module)}, sources)
    path = cache_dir / f"features-{key}.npy"
    processes = current()
    hit = processes.all_true(path.is_file())
    if not hit and processes.world > 1:
        return _extracted_by_all_ranks(
            module,
            images,
            transform,
            views,
            path,
            dtype,
            processes,
            batch_size=batch_size,
            device=device,
            precision=precision,
            seed=seed,
            progress=progress,
        ), hit
    if not hit:
        with atomic_path(path) as tmp:
            shape = (int(views.sum()), *_output_shape(module, images, transform, device, precision))
            memmap = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            extract_features(
                module, images, transform, views, batch_size=batch_size, device=device, precision=precision,
                seed=seed, out=memmap, progress=progress,
            )  # fmt: skip
            memmap.flush()
            del memmap
    array = np.load(path, mmap_mode="r")
    return (np.array(array) if array.nbytes <= SPILL_BYTES else array), hit


def _extracted_by_all_ranks(
    module: nn.Module, images: torch.Tensor, transform, views: torch.Tensor, path: Path, dtype: type,
    processes: Processes, **options: Any,
) -> np.ndarray:  # fmt: skip
    """Each rank extracts its share of the batches; the sum over ranks of arrays that are zero elsewhere
    is the whole cache on every rank. Rank 0 stores it, or every rank when they share no file system."""
    shape = _output_shape(module, images, transform, options["device"], options["precision"])
    result = np.zeros((int(views.sum()), *shape), dtype=dtype)
    extract_features(module, images, transform, views, out=result, share=(processes.rank, processes.world), **options)
    processes.sum_into(result)
    if processes.main:
        _store(path, result)
    processes.barrier()
    if not path.is_file():
        _store(path, result)
    return result


def _output_shape(module: nn.Module, images: torch.Tensor, transform, device: torch.device, precision: str) -> tuple:
    """The shape of ``module``'s output for one image, found without moving the global RNG."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(), autocast(device, precision):
        module.eval()
        return tuple(module(transform(images[0]).unsqueeze(0).to(device)).shape[1:])


def _store(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


class CachedFeatureDataset(Dataset):
    """(cached output as float32, label) pairs; each access draws one of the image's cached views at random.

    ``views`` gives each image's number of views (default: one).
    """

    def __init__(
        self, features: np.ndarray, labels: torch.Tensor, views: int | torch.Tensor = 1, seed: int = 0
    ) -> None:
        self.features = features
        self.labels = labels
        self.views = _as_views(views, len(labels))
        self.rows = view_rows(self.views)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        count = int(self.views[index])
        view = int(torch.randint(count, (1,), generator=self.generator)) if count > 1 else 0
        row = int(self.rows[index, view])
        return torch.from_numpy(np.array(self.features[row], dtype=np.float32)), self.labels[index]
