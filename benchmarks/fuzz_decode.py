"""Fuzzing the decoder: damaged JPEG, PNG, GIF, BMP and WEBP files are decoded or rejected by name.

Small valid files of each format (animated GIF, PNG and WEBP among them) get random truncations,
bit flips and edited header fields (sizes, chunk and segment lengths, frame counts), then go
through ``decode_bytes`` one by one and through a dataset scan and ``decode_splits`` together.
Targets: no exception but ``UndecodableImage``, no case over 10 s, every rejected file named in the
skip warning, peak RSS under 2 GB whatever sizes the headers claim. ``tests/test_bad_input.py``
runs a few hundred of the same cases.

Usage: python -m benchmarks.fuzz_decode [--cases 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import resource
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnkit.data import (
    DEFAULT_MAX_PIXELS,
    SkippedFilesWarning,
    UndecodableImage,
    decode_bytes,
    decode_splits,
    load_dataset,
)
from cnnkit.models.config import Preprocessing

CASE_SECONDS = 10.0
RSS_LIMIT_GB = 2.0
# Header sizes worth claiming: degenerate, ordinary, just under and over the 40 MP budget, format limits.
CLAIMED_SIZES = (0, 1, 2, 255, 4096, 6000, 6324, 6326, 8000, 16383, 40000, 65535, 1 << 20, (1 << 31) - 1)


@dataclass
class FuzzCase:
    """One damaged file: which valid file it came from and what was done to it."""

    name: str
    base: str
    mutation: str
    data: bytes
    min_side: int | None  # what the caller would shrink to: small values take the JPEG draft path


def _encode(frames: list[np.ndarray], fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    images = [Image.fromarray(frame) for frame in frames]
    extra = {"save_all": True, "append_images": images[1:], "duration": 80} if len(images) > 1 else {}
    images[0].save(buffer, format=fmt, **extra, **options)
    return buffer.getvalue()


def valid_files(seed: int = 0) -> dict[str, bytes]:
    """The undamaged starting points: every format, still and animated, at a few dozen pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:24, 0:32]
    frames = [((xx * 8 + yy * 3 + 60 * k) % 256).astype(np.uint8) for k in range(3)]
    rgb = [np.stack([f, 255 - f, rng.integers(0, 256, f.shape, dtype=np.uint8)], axis=-1) for f in frames]
    return {
        "baseline.jpg": _encode(rgb[:1], "JPEG", quality=90),
        "progressive.jpg": _encode(rgb[:1], "JPEG", progressive=True),
        "gray.jpg": _encode(frames[:1], "JPEG"),
        "rgb.png": _encode(rgb[:1], "PNG"),
        "animated.png": _encode(rgb, "PNG"),
        "palette.png": _encode([np.asarray(Image.fromarray(rgb[0]).convert("P"))], "PNG"),
        "animated.gif": _encode(rgb, "GIF"),
        "still.gif": _encode(rgb[:1], "GIF"),
        "rgb.bmp": _encode(rgb[:1], "BMP"),
        "gray.bmp": _encode(frames[:1], "BMP"),
        "lossy.webp": _encode(rgb[:1], "WEBP", quality=80),
        "lossless.webp": _encode(rgb[:1], "WEBP", lossless=True),
        "animated.webp": _encode(rgb, "WEBP"),
    }


def _put(data: bytearray, offset: int, layout: str, value: int) -> None:
    """Write ``value`` into a header field, wrapped to the field's width, if the field is inside the file."""
    size = struct.calcsize(layout)
    if offset + size <= len(data):
        bits = 8 * size
        value %= 1 << bits
        if layout[-1].islower() and value >= 1 << (bits - 1):  # signed field
            value -= 1 << bits
        struct.pack_into(layout, data, offset, value)


def _png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, length, type) of each PNG chunk, as far as the lengths can be followed."""
    chunks, offset = [], 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks.append((offset, length, kind))
        offset += 12 + length
    return chunks


def _fix_png_crc(data: bytearray, offset: int, length: int) -> None:
    end = offset + 8 + length
    if end + 4 <= len(data):
        struct.pack_into(">I", data, end, zlib.crc32(data[offset + 4 : end]))


def _edit_png(data: bytearray, rng: np.random.Generator) -> str:
    chunks = _png_chunks(bytes(data))
    choice = rng.integers(3)
    if choice == 0 or len(chunks) < 2:  # the size in IHDR, usually with a valid checksum so the edit is read
        _put(data, 16, ">I", _claimed(rng))
        _put(data, 20, ">I", _claimed(rng))
        if rng.random() < 0.8:
            _fix_png_crc(data, 8, 13)
        return "png-size"
    actl = [c for c in chunks if c[2] == b"acTL"]
    if choice == 1 and actl:
        offset, length, _ = actl[0]
        _put(data, offset + 8, ">I", int(rng.choice([0, 1, 2, 1000, 1 << 20, (1 << 31) - 1])))
        _fix_png_crc(data, offset, length)
        return "png-frame-count"
    offset, length, _ = chunks[rng.integers(len(chunks))]
    _put(data, offset, ">I", int(rng.choice([0, 1, length - 1, length + 1, length * 50, (1 << 31) - 1])))
    return "png-chunk-length"


def _edit_jpeg(data: bytearray, rng: np.random.Generator) -> str:
    segments, offset = [], 2
    while offset + 4 <= len(data) and data[offset] == 0xFF and data[offset + 1] != 0xDA:
        length = struct.unpack_from(">H", data, offset + 2)[0]
        segments.append((offset, data[offset + 1], length))
        offset += 2 + length
    frames = [s for s in segments if s[1] in (0xC0, 0xC1, 0xC2)]
    if frames and rng.random() < 0.6:
        start = frames[0][0]
        _put(data, start + 5, ">H", _claimed(rng))
        _put(data, start + 7, ">H", _claimed(rng))
        if rng.random() < 0.2:
            _put(data, start + 9, ">B", int(rng.integers(0, 256)))  # component count
        return "jpeg-size"
    if not segments:
        return _flip_bits(data, rng)
    start, _, length = segments[rng.integers(len(segments))]
    _put(data, start + 2, ">H", int(rng.choice([0, 1, 2, length - 1, length + 7, 65535])))
    return "jpeg-segment-length"


def _edit_gif(data: bytearray, rng: np.random.Generator) -> str:
    choice = rng.integers(3)
    if choice == 0:  # the logical screen
        _put(data, 6, "<H", _claimed(rng))
        _put(data, 8, "<H", _claimed(rng))
        return "gif-screen-size"
    frame = bytes(data).rfind(b"\x21\xf9\x04")
    if choice == 1 and frame > 0 and data[-1:] == b"\x3b":  # many copies of the last frame: a frame-count bomb
        copies = int(rng.integers(10, 400))
        data[-1:] = bytes(data[frame:-1]) * copies + b"\x3b"
        return "gif-frame-count"
    descriptor = bytes(data).find(b"\x2c", 13)
    if descriptor > 0:
        _put(data, descriptor + 5, "<H", _claimed(rng))
        _put(data, descriptor + 7, "<H", _claimed(rng))
    return "gif-frame-size"


def _edit_bmp(data: bytearray, rng: np.random.Generator) -> str:
    fields = {
        "width": (18, "<i"),
        "height": (22, "<i"),
        "bits": (28, "<H"),
        "offset": (10, "<I"),
        "filesize": (2, "<I"),
    }
    fields |= {"compression": (30, "<I"), "colours": (46, "<I")}
    name = list(fields)[rng.integers(len(fields))] if rng.random() < 0.5 else "width"
    if name == "width":
        _put(data, 18, "<i", _claimed(rng) * int(rng.choice([1, -1])))
        _put(data, 22, "<i", _claimed(rng) * int(rng.choice([1, -1])))
        return "bmp-size"
    offset, layout = fields[name]
    _put(data, offset, layout, int(rng.choice([0, 1, 3, 4, 16, 24, 32, 255, 65535, (1 << 31) - 1])))
    return f"bmp-{name}"


def _edit_webp(data: bytearray, rng: np.random.Generator) -> str:
    chunk = bytes(data[12:16])
    choice = rng.integers(3)
    if choice == 0:
        _put(data, 4 if rng.random() < 0.5 else 16, "<I", int(rng.choice([0, 1, 7, len(data), (1 << 32) - 1])))
        return "webp-chunk-length"
    if chunk == b"VP8X" and len(data) >= 30:  # extended or animated: canvas width-1 and height-1, 24 bits each
        data[24:27] = ((_claimed(rng) - 1) % (1 << 24)).to_bytes(3, "little")
        data[27:30] = ((_claimed(rng) - 1) % (1 << 24)).to_bytes(3, "little")
        return "webp-canvas-size"
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key-frame start code
        _put(data, 26, "<H", _claimed(rng) & 0x3FFF)
        _put(data, 28, "<H", _claimed(rng) & 0x3FFF)
        return "webp-size"
    _put(data, 21, "<I", int(rng.integers(0, 1 << 32)))  # lossless: 14 + 14 bits of size-1 after the signature
    return "webp-size"


def _claimed(rng: np.random.Generator) -> int:
    return int(rng.choice(CLAIMED_SIZES)) if rng.random() < 0.7 else int(rng.integers(0, 70000))


def _flip_bits(data: bytearray, rng: np.random.Generator) -> str:
    for _ in range(int(rng.integers(1, 24))):
        index = int(rng.integers(len(data)))
        data[index] ^= 1 << int(rng.integers(8))
    return "bit-flips"


def _truncate(data: bytearray, rng: np.random.Generator) -> str:
    del data[int(rng.integers(0, len(data))) :]
    return "truncation"


EDITS: dict[str, Callable[[bytearray, np.random.Generator], str]] = {
    ".jpg": _edit_jpeg,
    ".png": _edit_png,
    ".gif": _edit_gif,
    ".bmp": _edit_bmp,
    ".webp": _edit_webp,
}


def fuzz_cases(count: int, seed: int = 0) -> list[FuzzCase]:
    """``count`` damaged files, the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    bases = valid_files(seed)
    names = sorted(bases)
    cases = []
    for index in range(count):
        base = names[index % len(names)]
        data = bytearray(bases[base])
        roll = rng.random()
        if roll < 0.4:
            mutation = EDITS[Path(base).suffix](data, rng)
        elif roll < 0.65:
            mutation = _flip_bits(data, rng)
        elif roll < 0.85:
            mutation = _truncate(data, rng)
        else:
            mutation = EDITS[Path(base).suffix](data, rng) + "+" + _flip_bits(data, rng)
        min_side = int(rng.integers(4, 64)) if rng.random() < 0.5 else None
        cases.append(FuzzCase(f"case{index:05d}{Path(base).suffix}", base, mutation, bytes(data), min_side))
    return cases


@dataclass
class Outcome:
    """What decoding one case gave: ``accepted``, ``rejected: <kind>``, ``traceback: <type>`` or ``hang``."""

    case: FuzzCase
    status: str
    seconds: float
    detail: str = ""


def decode_case(case: FuzzCase, max_pixels: int = DEFAULT_MAX_PIXELS) -> Outcome:
    """Decode one case in the calling thread, classifying what happened."""
    started = time.perf_counter()
    try:
        image = decode_bytes(case.data, 3, max_pixels=max_pixels, min_side=case.min_side)
    except UndecodableImage as exc:
        return Outcome(case, f"rejected: {exc.kind}", time.perf_counter() - started, str(exc))
    except Exception as exc:  # the failure this benchmark exists to find
        return Outcome(case, f"traceback: {type(exc).__name__}", time.perf_counter() - started, repr(exc))
    seconds = time.perf_counter() - started
    sane = image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
    sane = sane and image.shape[1] * image.shape[2] <= max_pixels
    return Outcome(case, "accepted" if sane else "traceback: bad tensor", seconds, str(tuple(image.shape)))


def decode_all(cases: list[FuzzCase]) -> list[Outcome]:
    """Every case on its own, each with :data:`CASE_SECONDS` to finish (a stuck one is a ``hang``)."""
    outcomes = []
    pool = ThreadPoolExecutor(1)
    for case in cases:
        future = pool.submit(decode_case, case)
        try:
            outcomes.append(future.result(timeout=CASE_SECONDS))
        except FutureTimeout:
            outcomes.append(Outcome(case, "hang", CASE_SECONDS))
            pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(1)
    pool.shutdown(wait=False)
    return outcomes


def unnamed_rejections(cases: list[FuzzCase], folder: Path, good_per_class: int = 8) -> tuple[list[str], int]:
    """Write the cases into a two-class dataset with some good images, scan and decode every split.

    Returns the files left out but not named in the one skip warning (or not in ``skipped``),
    and how many were left out.
    """
    good = valid_files(1)["rgb.png"]
    for index, case in enumerate(cases):
        target = folder / ("ab"[index % 2]) / case.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(case.data)
    for name in "ab":
        for index in range(good_per_class):
            (folder / name / f"good{index}.png").write_bytes(good)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(folder, val_split=0.25, test_split=0.25)
        decoded = decode_splits(dataset, Preprocessing(input_size=16, crop_pct=0.875))
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning))
    kept = {source for split in (decoded.train, decoded.val, decoded.test) for source in split.sources}
    left_out = [str(path) for path in sorted(folder.rglob("*")) if path.is_file() and str(path) not in kept]
    unnamed = [path for path in left_out if path not in messages or path not in decoded.skipped]
    return unnamed, len(left_out)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def main() -> int:
    from benchmarks._common import report

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cases = fuzz_cases(args.cases, args.seed)
    started = time.perf_counter()
    outcomes = decode_all(cases)
    decode_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        unnamed, left_out = unnamed_rejections(cases, Path(tmp))
    counts = Counter(outcome.status for outcome in outcomes)
    slowest = max(outcomes, key=lambda outcome: outcome.seconds)
    tracebacks = [outcome for outcome in outcomes if outcome.status.startswith(("traceback", "hang"))]
    for outcome in tracebacks[:10]:
        print(f"{outcome.case.name} ({outcome.case.base}, {outcome.case.mutation}): {outcome.status} {outcome.detail}")
    rows = [{"outcome": status, "cases": number} for status, number in sorted(counts.items())]
    rows += [
        {"outcome": "tracebacks or hangs", "cases": len(tracebacks)},
        {"outcome": f"slowest: {slowest.case.name} ({slowest.case.mutation}), s", "cases": round(slowest.seconds, 3)},
        {"outcome": "decode wall time, s", "cases": round(decode_seconds, 1)},
        {"outcome": "left out of the dataset / of them unnamed", "cases": f"{left_out} / {len(unnamed)}"},
        {"outcome": "peak RSS, GB", "cases": round(peak_rss_gb(), 2)},
    ]
    targets = {
        "no exception but UndecodableImage": not any(o.status.startswith("traceback") for o in outcomes),
        f"no case over {CASE_SECONDS:.0f} s": counts["hang"] == 0 and slowest.seconds < CASE_SECONDS,
        "every rejected file named in the warning": not unnamed,
        f"peak RSS under {RSS_LIMIT_GB} GB": peak_rss_gb() < RSS_LIMIT_GB,
    }
    return 0 if report("fuzz_decode", f"{args.cases} fuzzed files, seed {args.seed}", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
