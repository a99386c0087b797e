"""The edits a near-duplicate check must see through, as one function.

The tests and the check benchmark measure recall on these copies; use it to try a ``--similarity``
on your own photos before trusting it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

COPY_KINDS = ("resized", "jpeg60", "cropped", "brighter", "flipped")


def write_near_copies(photo: Image.Image, folder: Path, stem: str) -> dict[str, Path]:
    """Write ``stem_KIND`` copies of ``photo``: half size, JPEG quality 60, 5% cropped off each side,
    12% brighter, and the mirror image (which the check reports as kind ``flip``).

    All but the JPEG copy are PNG files, so that no copy carries an edit it is not named after.
    """
    photo = photo.convert("RGB")
    width, height = photo.size
    dx, dy = width // 20, height // 20
    edited = {
        "resized": photo.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.LANCZOS),
        "cropped": photo.crop((dx, dy, width - dx, height - dy)),
        "brighter": ImageEnhance.Brightness(photo).enhance(1.12),
        "flipped": ImageOps.mirror(photo),
    }
    paths = {kind: folder / f"{stem}_{kind}.png" for kind in edited}
    for kind, image in edited.items():
        image.save(paths[kind], format="PNG")
    paths["jpeg60"] = folder / f"{stem}_jpeg60.jpg"
    photo.save(paths["jpeg60"], format="JPEG", quality=60)
    return {kind: paths[kind] for kind in COPY_KINDS}
