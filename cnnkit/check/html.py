"""``cnnkit check --html FILE``: one self-contained page to look through what the check found.

Thumbnails and the size histogram are inlined as data URIs, so the file can be mailed or archived
and still shows every picture. Each duplicate group and each label-issue candidate is shown with
its images, because deciding whether two files are copies, or whether a label is wrong, takes a look.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from collections.abc import Iterable
from pathlib import Path

from cnnkit.check.findings import CheckFindings, DuplicateGroup, ImageRef, Inventory, LabelIssue, Outlier
from cnnkit.fileio import write_text

THUMBNAIL = 128
SHOWN_PER_SECTION = 120  # the JSON holds every finding; the page stays quick to open

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2933; margin: 0 auto; max-width: 1180px; padding: 0 22px 40px; }
h1 { font-size: 24px; margin: 26px 0 2px; } h2 { font-size: 19px; margin: 28px 0 8px; border-top: 1px solid #e4e7eb;
padding-top: 18px; } .muted { color: #616e7c; }
table { border-collapse: collapse; margin: 6px 0 12px; } td, th { padding: 4px 10px; border-bottom: 1px solid #e4e7eb;
text-align: right; } td:first-child, th:first-child { text-align: left; } th { background: #f5f7fa; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #f5f7fa; border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card b { display: block; font-size: 24px; } .warn { background: #fff4e5; }
.group { border: 1px solid #e4e7eb; border-radius: 8px; padding: 8px; margin: 10px 0; }
.row { display: flex; flex-wrap: wrap; gap: 8px; } figure { margin: 0; width: 136px; font-size: 11px; }
figure img { width: 128px; height: 128px; object-fit: contain; background: #102a43; border-radius: 4px; }
figcaption { overflow-wrap: anywhere; } .tag { font-weight: 600; } .bad { color: #c53030; }
"""


def _text(value: object) -> str:
    return html.escape(str(value))


def thumbnail_uri(path: str) -> str:
    """A small JPEG of the image as a data URI, decoded as training decodes it (EXIF orientation applied)."""
    from PIL import Image

    from cnnkit.data.decode import UndecodableImage, decode_file

    try:
        pixels = decode_file(path, 3).permute(1, 2, 0).numpy()
    except UndecodableImage:
        return ""
    picture = Image.fromarray(pixels)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(image: ImageRef, caption: str) -> str:
    name = Path(image.path).name
    return (
        f'<figure><img src="{thumbnail_uri(image.path)}" alt="{_text(name)}" title="{_text(image.path)}">'
        f"<figcaption>{caption}<br><span class=muted>{_text(name)}</span></figcaption></figure>"
    )


def size_histogram_uri(sizes: list[tuple[int, int]]) -> str:
    """Widths and heights of the readable images as one PNG histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.hist([[w for w, _ in sizes], [h for _, h in sizes]], bins=30, label=["width", "height"])
    ax.set_xlabel("pixels")
    ax.set_ylabel("images")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(header: list[str], rows: Iterable[list[object]]) -> str:
    head = "".join(f"<th>{_text(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cards(findings: CheckFindings) -> str:
    numbers = [
        ("images", findings.inventory.total, False),
        ("unreadable", len(findings.inventory.unreadable), bool(findings.inventory.unreadable)),
        ("duplicate groups", len(findings.duplicates), bool(findings.duplicates)),
        ("conflicting labels", len(findings.conflicting_labels), bool(findings.conflicting_labels)),
        ("shared across splits", len(findings.leaks), bool(findings.leaks)),
        ("label-issue candidates", len(findings.label_issues), bool(findings.label_issues)),
        ("outliers", len(findings.outliers), bool(findings.outliers)),
    ]
    cells = "".join(
        f'<div class="card{" warn" if bad else ""}"><b>{n}</b>{_text(label)}</div>' for label, n, bad in numbers
    )
    return f'<div class="cards">{cells}</div>'


def _inventory_section(inventory: Inventory, classes: list[str]) -> str:
    splits = list(inventory.counts)
    rows = [[name, *(inventory.counts[s][name] for s in splits)] for name in classes]
    parts = ["<h2>Inventory</h2>", _table(["class", *splits], rows)]
    imbalance = inventory.imbalance
    parts.append(f"<p>Largest / smallest training class: {imbalance.ratio:.2f} ({_text(imbalance.largest)} / "
                 f"{_text(imbalance.smallest)}). {_text(imbalance.advice or '')}</p>")  # fmt: skip
    parts.append(f"<p>Colour modes: {_text(', '.join(f'{m} {n}' for m, n in inventory.modes.items()))}</p>")
    if inventory.sizes:
        parts.append(f'<img src="{size_histogram_uri(inventory.sizes)}" alt="image sizes">')
    if inventory.unreadable:
        parts.append("<h3>Unreadable files (training skips them)</h3>")
        parts.append(_table(["file", "reason"], ([f.path, f.reason] for f in inventory.unreadable)))
    if inventory.oversized:
        parts.append("<h3>Oversized files (slow to decode on every run; downscale them once)</h3>")
        rows = ([f.path, f"{f.width} x {f.height}", f"{f.megabytes:.1f} MB"] for f in inventory.oversized)
        parts.append(_table(["file", "pixels", "size"], rows))
    return "".join(parts)


def _group_html(group: DuplicateGroup) -> str:
    scope = _text(group.scope)
    css = " bad" if group.conflicting_labels or group.crosses_splits else ""
    detail = "" if group.kind == "exact" else f", cosine {group.similarity:.3f}, hash distance {group.hash_distance}"
    images = "".join(_figure(image, f"{_text(image.label)} · {_text(image.split)}") for image in group.images)
    return f'<div class="group"><span class="tag{css}">{_text(group.kind)} · {scope}</span>' \
           f'<span class=muted>{detail}</span><div class="row">{images}</div></div>'  # fmt: skip


def _issue_html(issue: LabelIssue) -> str:
    caption = (
        f"#{issue.rank} <span class=bad>{_text(issue.image.label)}</span> → {_text(issue.suggested)} "
        f"({issue.confidence:.0%}; given {issue.given_probability:.0%}) · {_text(issue.image.split)}"
    )
    return _figure(issue.image, caption)


def _outlier_html(outlier: Outlier) -> str:
    return _figure(outlier.image, f"{_text(outlier.reason)} ({outlier.score}) · {_text(outlier.image.label)}")


def _listing(title: str, items: list, render, wrap_row: bool) -> str:
    """A section with at most :data:`SHOWN_PER_SECTION` items and a note on how many the JSON adds."""
    if not items:
        return f"<h2>{_text(title)}</h2><p class=muted>None found.</p>"
    shown = "".join(render(item) for item in items[:SHOWN_PER_SECTION])
    more = len(items) - SHOWN_PER_SECTION
    note = f"<p class=muted>{more} more in the --json output.</p>" if more > 0 else ""
    body = f'<div class="row">{shown}</div>' if wrap_row else shown
    return f"<h2>{_text(title)} ({len(items)})</h2>{body}{note}"


def render_page(findings: CheckFindings) -> str:
    """The whole page as one string."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    sections = [
        f"<h1>Data check: {_text(findings.dataset)}</h1>",
        f"<p class=muted>{_text(findings.root)} · {_text(findings.layout)} · model {_text(findings.model or 'none')}"
        f" · {when}</p>",
        _cards(findings),
        "".join(f"<p class=muted>{_text(note)}</p>" for note in findings.notes),
        _inventory_section(findings.inventory, findings.classes),
        _listing("Duplicate groups", findings.duplicates, _group_html, wrap_row=False),
        _listing("Label-issue candidates", findings.label_issues, _issue_html, wrap_row=True),
        _listing("Outliers worth a look", findings.outliers, _outlier_html, wrap_row=True),
    ]
    title = f"cnnkit check: {_text(findings.dataset)}"
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>' \
           f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n"  # fmt: skip


def write_html(findings: CheckFindings, path: str | Path) -> Path:
    """Write the page atomically and return its path."""
    path = Path(path)
    write_text(path, render_page(findings))
    return path
