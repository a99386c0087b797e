"""Images out of a ``multipart/form-data`` body, with truncation and missing boundaries reported as 422.

The body is parsed from memory (it is already bounded by the body limit) with python-multipart's
streaming parser, which tells a complete body (its closing boundary seen) from a cut one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from cnnkit.serve.limits import malformed

IMAGE_FIELDS = ("file", "files", "image", "images")


@dataclass
class Part:
    """One part of the body: its form field name, its file name if it is a file, and its bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def disposition(self) -> dict[bytes, bytes]:
        return parse_options_header(self.headers.get("content-disposition", ""))[1]

    @property
    def name(self) -> str:
        return self.disposition().get(b"name", b"").decode("utf-8", "replace")

    @property
    def filename(self) -> str | None:
        value = self.disposition().get(b"filename")
        return None if value is None else value.decode("utf-8", "replace")

    @property
    def is_image(self) -> bool:
        """A file part, or a part in one of the image fields (some clients omit the file name)."""
        return self.filename is not None or self.name in IMAGE_FIELDS


@dataclass
class _Collector:
    """python-multipart callbacks that gather the parts and note whether the closing boundary came."""

    parts: list[Part] = field(default_factory=list)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": lambda: self.parts.append(Part()),
            "on_part_data": lambda data, start, end: self.parts[-1].chunks.append(bytes(data[start:end])),
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_end": self.end,
        }

    def header_end(self) -> None:
        key = self.header_field.decode("latin-1").strip().lower()
        self.parts[-1].headers[key] = self.header_value.decode("utf-8", "replace").strip()
        self.header_field.clear()
        self.header_value.clear()

    def end(self) -> None:
        self.ended = True


def multipart_parts(body: bytes, content_type: str) -> list[Part]:
    """Every part of a complete multipart body; a missing boundary or a cut body is a 422."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise malformed("the multipart Content-Type has no boundary; let the client library build the body")
    collector = _Collector()
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError, IndexError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise malformed(f"the multipart body is malformed ({detail})") from exc
    if not collector.ended:
        raise malformed("the multipart body is truncated: its closing boundary never came")
    return collector.parts
