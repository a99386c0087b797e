"""What a request may be, and the 4xx answer when it is not: body size, pixel budget, formats, image count.

Every refusal is a :class:`ServeError`, which the app turns into a JSON ``{"error", "code"}`` answer
(the shape the Open Inference Protocol uses for errors) with its status and headers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MEGABYTE = 1_000_000
# What cnnkit's decoder reads; MPO is how Pillow names the JPEGs many phone cameras write.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")


@dataclass(frozen=True)
class Limits:
    """The service's bounds; each is checked before the work it protects against."""

    max_body_bytes: int = 10 * MEGABYTE
    max_header_bytes: int = 32 * 1024
    max_pixels: int = 40_000_000
    max_explain_pixels: int = 16_000_000  # Grad-CAM blends at full size: about 30 bytes of float temporaries a pixel
    max_images: int = 16
    timeout_s: float = 30.0
    max_queued_images: int = 1024

    def to_dict(self) -> dict[str, float]:
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_header_bytes": self.max_header_bytes,
            "max_pixels": self.max_pixels,
            "max_explain_pixels": self.max_explain_pixels,
            "max_images_per_request": self.max_images,
            "timeout_s": self.timeout_s,
            "max_queued_images": self.max_queued_images,
        }


@dataclass
class ServeError(Exception):
    """A request the service refuses: an HTTP status, a short machine-readable code and a sentence for people."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


def too_large(message: str) -> ServeError:
    return ServeError(413, "too_large", message)


def malformed(message: str) -> ServeError:
    return ServeError(422, "malformed", message)


def unsupported(message: str) -> ServeError:
    return ServeError(415, "unsupported_media", message)


def error_response(error: ServeError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class HeaderLimit:
    """ASGI middleware: 431 for requests whose headers together pass ``max_bytes`` (uvicorn itself allows more)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(key) + len(value) for key, value in scope["headers"])
            if size > self.max_bytes:
                message = f"the request headers are {size:,} bytes; the limit is {self.max_bytes:,}"
                await error_response(ServeError(431, "headers_too_large", message))(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as its declared or received size passes ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(f"the body is {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks, received = [], 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(f"the body is over the limit of {max_bytes:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ServeError(400, "disconnected", "the client closed the connection before the body ended") from exc
    return b"".join(chunks)


def check_image_header(data: bytes, max_pixels: int, name: str) -> None:
    """Refuse what is not an allowed image (415) or holds more pixels than the budget (413), reading only the header.

    Pillow parses just the header here, so a small file that claims a huge size (a decompression
    bomb) is refused before any pixel is decoded.
    """
    from PIL import Image

    if not data:
        raise malformed(f"{name} is empty: send the image's bytes")
    try:
        with Image.open(io.BytesIO(data)) as header:
            image_format, (width, height) = header.format, header.size
            frames = getattr(header, "n_frames", 1) if getattr(header, "is_animated", False) else 1
    except Image.DecompressionBombError as exc:
        raise too_large(f"{name} claims more pixels than Pillow will open ({exc})") from exc
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, struct.error...) for untrusted bytes
        raise unsupported(f"{name} is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})") from exc
    if image_format not in ALLOWED_FORMATS:
        raise unsupported(f"{name} is {image_format}; supported formats are {', '.join(ALLOWED_FORMATS)}")
    pixels = width * height * frames
    if pixels > max_pixels:
        size = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
        raise too_large(f"{name} is {size}, {pixels:,} pixels; the limit is {max_pixels:,}")
