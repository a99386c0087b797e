"""Turn an image file into a uint8 tensor, whatever its format or colour mode.

torchvision.io decodes JPEG, PNG, GIF and WEBP natively (CMYK, palette, 16-bit and EXIF
orientation included); Pillow covers what it lacks (BMP, TIFF). A file that neither can decode
raises :class:`UndecodableImage`, which dataset loading turns into a skip-and-warn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

_NATIVE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF")


class UndecodableImage(Exception):
    """The file is not an image that cnnkit can read."""


def decode_bytes(data: bytes, channels: int = 3) -> torch.Tensor:
    """Decode encoded image bytes into a (channels, H, W) uint8 tensor."""
    if not data:
        raise UndecodableImage("empty file")
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    if data.startswith(_NATIVE_MAGIC):
        try:
            image = decode_image(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode, apply_exif_orientation=True
            )
        except RuntimeError as exc:
            raise UndecodableImage(str(exc).splitlines()[-1]) from exc
    else:
        image = _decode_with_pillow(data, channels)
    if image.dtype != torch.uint8:  # 16-bit PNGs decode to uint16
        image = F.to_dtype(image, torch.uint8, scale=True)
    return fit_channels(image, channels)


def fit_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a grey channel into RGB, or reduce RGB to luma (ITU-R 601 weights), as the model needs."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (image[:3].float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _decode_with_pillow(data: bytes, channels: int) -> torch.Tensor:
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil = ImageOps.exif_transpose(pil)
            array = np.asarray(pil.convert("RGB" if channels == 3 else "L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UndecodableImage(str(exc)) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def decode_file(path: str | Path, channels: int = 3) -> torch.Tensor:
    """Decode an image file; raises :class:`UndecodableImage` if it is not a readable image."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UndecodableImage(str(exc)) from exc
    return decode_bytes(data, channels)
