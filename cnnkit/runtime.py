"""Where and how tensors run: device choice, channels_last and bf16 autocast.

Measured on 2-core Zen 4 CPUs (see shared/MEASURED.md): channels_last plus bf16 autocast trains
1.8-2.7x faster than NCHW fp32 and infers 3-4x faster, with the same accuracy. bf16 is only used
where the CPU has native bf16 instructions; elsewhere emulation would be slower than fp32.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from cnnkit.errors import CnnkitError


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CnnkitError(f"--device {requested}: no CUDA GPU is visible to PyTorch here; use --device auto or cpu")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CnnkitError("--device mps: Apple's Metal GPU is not available here; use --device auto or cpu")
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 matrix math natively (AVX512-BF16, AMX or Arm BF16)."""
    if platform.system() != "Linux":
        return platform.system() == "Darwin" and platform.machine() == "arm64"
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", " bf16"))


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Map ``auto`` to ``bf16`` where it is native and fast, else ``fp32``."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision not in ("bf16", "fp32"):
        from cnnkit.errors import CnnkitError

        raise CnnkitError(f"--precision must be auto, bf16 or fp32, not {precision!r}")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when ``precision == 'bf16'``; a no-op otherwise."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from handing freed tensor memory back to the OS after every batch (Linux only).

    By default each batch's large activations are mmapped and unmapped, or trimmed off the heap,
    so the next batch page-faults them back in: on 2-core Zen 4 that was 40% of EfficientNet-Lite0
    feature extraction, spent in the kernel. Keeping up to 1 GiB of freed memory and serving
    blocks up to 32 MiB (glibc's maximum) from the heap removes it. Returns whether it applied.
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(libc.mallopt(m_mmap_threshold, 32 << 20))


def inference_batch_size(device: torch.device) -> int:
    """Images per forward pass when nothing trains.

    Small on CPUs, where a batch's activations then stay in cache and under glibc's 32 MiB mmap
    limit (see :func:`keep_freed_memory`): EfficientNet-Lite0's frozen layers, bf16 on 2-core Zen 4,
    take 3.7 ms per image in batches of 8 and 5.0 in batches of 16 or 32 (with freed memory kept).
    """
    return 8 if device.type == "cpu" else 128


def lightning_precision(precision: str) -> str:
    return "bf16-mixed" if precision == "bf16" else "32-true"
