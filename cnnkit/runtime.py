"""Where and how tensors run: device choice, channels_last and bf16 autocast.

Measured on 2-core Zen 4 CPUs (see shared/MEASURED.md): channels_last plus bf16 autocast trains
1.8-2.7x faster than NCHW fp32 and infers 3-4x faster, with the same accuracy. bf16 is only used
where the CPU has native bf16 instructions; elsewhere emulation would be slower than fp32.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator
from pathlib import Path

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
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


def inference_batch_size(device: torch.device) -> int:
    """Images per forward pass when nothing trains.

    Small on CPUs, where a batch's activations then stay in cache: EfficientNet-Lite0's frozen layers
    (bf16, 2-core Zen 4) run 400 images/s in batches of 8-16, 230 in batches of 32, 150 in batches of 64.
    """
    return 16 if device.type == "cpu" else 128


def lightning_precision(precision: str) -> str:
    return "bf16-mixed" if precision == "bf16" else "32-true"
