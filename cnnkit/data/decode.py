"""Turn an image file into a uint8 tensor, whatever its format, colour mode or claims.

The header is read first (Pillow parses it without decoding any pixels), so a file whose header
claims more than ``max_pixels`` is refused before a single large buffer exists: a 1 KB BMP or a
1.6 MB PNG can claim 40000 x 40000 pixels, which would take gigabytes to decode. torchvision.io
then decodes JPEG and still WEBP (CMYK and EXIF orientation included); Pillow decodes the rest:
PNG (torchvision's PNG decoder can crash the process on a damaged file), GIF (torchvision would
decode every frame at once), animated WEBP, BMP, TIFF and PPM, in any colour mode, 16-bit too.
Animated images give their first frame. A JPEG at least four times the size its caller needs is
decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``), since it is shrunk afterwards anyway. A file
that cannot be read raises :class:`UndecodableImage`, which dataset loading turns into a skip.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_image

DEFAULT_MAX_PIXELS = 40_000_000
"""The pixel budget: 40 megapixels decode to 120 MB of RGB, more than any photo a convnet needs."""

SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
"""Pillow's names for the formats cnnkit reads (MPO: camera JPEGs with a second picture; PPM: also PGM)."""

DRAFT_MARGIN = 2
"""A drafted JPEG keeps at least twice the short side its caller needs, so that the final antialiased
resize, not the coarser DCT scaling, does most of the shrinking; and any photo less than four times
that side decodes exactly as it would without draft."""

LARGE_PIXELS = 8_000_000
"""Images that decode to more pixels than this are decoded one at a time, whatever the number of
threads, so that peak memory is one image at the budget plus a few of this size at most."""
_LARGE_DECODE = threading.Lock()

# Not PNG: torchvision's PNG decoder can crash the process on a damaged file (benchmarks/fuzz_decode.py).
_TORCHVISION_FORMATS = ("JPEG", "MPO", "WEBP")
_NOT_AN_IMAGE = "not a JPEG, PNG, GIF, BMP, WEBP, TIFF or PPM file"

# What Pillow's parsers raise for "not this format" (struct.error: a header field past the end of the data).
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)
# What Pillow's and torchvision's decoders raise on damaged data.
_DECODER_ERRORS = (OSError, ValueError, RuntimeError, EOFError, *_NOT_THIS_FORMAT)


class UndecodableImage(Exception):
    """The file is not an image that cnnkit can read; the message says why, for the skip warning."""

    kind = "corrupt"


class NotAnImage(UndecodableImage):
    """Empty, or no supported format recognises the file's first bytes (``.DS_Store``, text, ...)."""

    kind = "not an image"


class ImageTooLarge(UndecodableImage):
    """The header claims more pixels than the budget; nothing was decoded."""

    kind = "too large"


@functools.cache
def _openers() -> tuple[tuple[Callable, Callable | None], ...]:
    """Pillow's (factory, accept) pair of each supported format, in Pillow's own detection order."""
    Image.init()
    return tuple(Image.OPEN[name] for name in Image.ID if name in SUPPORTED_FORMATS)


def _accepting(prefix: bytes) -> list[Callable]:
    """The factories of the supported formats whose signature test accepts the file's first bytes."""
    found = []
    for factory, accept in _openers():
        try:
            verdict = accept(prefix) if accept is not None else True
        except _NOT_THIS_FORMAT:
            continue
        if verdict and not isinstance(verdict, str):
            found.append(factory)
    return found


def check_signature(path: str | Path) -> None:
    """Raise :class:`UndecodableImage` unless the file starts like an image of a supported format.

    Reads 16 bytes: cheap enough for every file of a large dataset at scan time, and enough to
    leave out ``Thumbs.db``, text files and empty files before splitting.
    """
    try:
        with open(path, "rb") as stream:
            prefix = stream.read(16)
    except OSError as exc:
        raise UndecodableImage(exc.strerror or _one_line(exc)) from exc
    if not prefix:
        raise NotAnImage("empty file")
    if not _accepting(prefix):
        raise NotAnImage(_NOT_AN_IMAGE)


def open_lazily(stream: BinaryIO) -> Image.Image:
    """A Pillow image that has parsed the header only, or :class:`UndecodableImage`.

    This is ``Image.open`` restricted to :data:`SUPPORTED_FORMATS` and without Pillow's own
    decompression-bomb check, which would raise before the size could be reported and ignores
    the caller's ``max_pixels``; :func:`check_pixel_budget` replaces it.
    """
    prefix = stream.read(16)
    if not prefix:
        raise NotAnImage("empty file")
    refusal = ""
    for factory in _accepting(prefix):
        stream.seek(0)
        try:
            return factory(stream, "")
        except _NOT_THIS_FORMAT as exc:  # not this format after all: try the next
            refusal = refusal or _one_line(exc)
        except Image.DecompressionBombError as exc:  # a GIF frame far larger than its screen
            raise ImageTooLarge(_one_line(exc)) from exc
        except _DECODER_ERRORS as exc:
            raise UndecodableImage(f"broken header ({_one_line(exc)})") from exc
    if refusal:
        raise UndecodableImage(f"broken header ({refusal})")
    raise NotAnImage(_NOT_AN_IMAGE)


def check_pixel_budget(width: int, height: int, max_pixels: int) -> None:
    """Refuse a size over the budget: decoding it would take ``3 * width * height`` bytes at least."""
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels, over the limit of {max_pixels:,} (--max-pixels)")
    if width < 1 or height < 1:
        raise UndecodableImage(f"header says {width}x{height} pixels")


def decode_bytes(
    data: bytes, channels: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> torch.Tensor:
    """Decode encoded image bytes into a (channels, H, W) uint8 tensor.

    ``min_side`` is the short side the caller will shrink the image to. A JPEG at least twice
    ``DRAFT_MARGIN * min_side`` in both sides is decoded at the reduced scale that keeps its
    short side at or above ``DRAFT_MARGIN * min_side``.
    """
    pil = open_lazily(io.BytesIO(data))
    width, height = pil.size
    check_pixel_budget(width, height, max_pixels)
    scale = _draft_scale(pil, min_side)
    animated = pil.format == "WEBP" and getattr(pil, "is_animated", False)
    large = math.ceil(width / scale) * math.ceil(height / scale) > LARGE_PIXELS
    with _LARGE_DECODE if large else contextlib.nullcontext():
        if pil.format in _TORCHVISION_FORMATS and scale == 1 and not animated:
            pil.close()
            image = _decode_with_torchvision(data, channels)
        else:
            image = _decode_with_pillow(pil, channels, DRAFT_MARGIN * min_side if scale > 1 else None)
    return fit_channels(image, channels)


def _draft_scale(pil: Image.Image, min_side: int | None) -> int:
    """1, 2, 4 or 8: how much smaller ``Image.draft`` will decode a JPEG asked for ``DRAFT_MARGIN * min_side``.

    The same rule as Pillow's own, so that the decoded size is known beforehand; 1 (no draft)
    unless the image is at least twice that target in both sides.
    """
    if min_side is None or pil.format not in ("JPEG", "MPO"):
        return 1
    fits = min(pil.size) // (DRAFT_MARGIN * min_side)
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def _decode_with_torchvision(data: bytes, channels: int) -> torch.Tensor:
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        image = decode_image(encoded, mode=mode, apply_exif_orientation=True)
    except RuntimeError as exc:
        raise UndecodableImage(_one_line(exc)) from exc
    return image[0] if image.ndim == 4 else image  # the first frame of an animation


def fit_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a grey channel into RGB, or reduce RGB to luma (ITU-R 601 weights), as the model needs."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (image[:3].float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _decode_with_pillow(pil: Image.Image, channels: int, draft_side: int | None) -> torch.Tensor:
    """The current (first) frame, at reduced JPEG scale when ``draft_side`` is given; closes ``pil``.

    Each intermediate copy is released as soon as the next exists: at 40 megapixels every copy
    is 120-160 MB, and several images are decoded at once.
    """
    mode = "RGB" if channels == 3 else "L"
    try:
        if draft_side is not None:
            pil.draft(None, (draft_side, draft_side))
        ImageOps.exif_transpose(pil, in_place=True)
        if pil.mode.startswith("I"):  # 16-bit grey: keep the top 8 bits, as torchvision's scaling does
            array = (np.asarray(pil).clip(0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        else:
            converted = pil if pil.mode == mode else pil.convert(mode)
            if converted is not pil:
                pil.close()
            array = np.array(converted)
            converted.close()
    except Image.DecompressionBombError as exc:  # a frame or tile larger than the header said
        raise ImageTooLarge(_one_line(exc)) from exc
    except _DECODER_ERRORS as exc:
        raise UndecodableImage(_one_line(exc)) from exc
    finally:
        pil.close()
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def decode_file(
    path: str | Path, channels: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> torch.Tensor:
    """Decode an image file; raises :class:`UndecodableImage` if it is not a readable image.

    ``max_pixels`` and ``min_side`` are :func:`decode_bytes`'s.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UndecodableImage(exc.strerror or _one_line(exc)) from exc
    return decode_bytes(data, channels, max_pixels, min_side)


def _one_line(exc: BaseException) -> str:
    """The last line of a decoder's message (torchvision's start with a C++ source location)."""
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
