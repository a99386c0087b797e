"""Box annotations: one object box per image, read from ``boxes.csv``, Pascal VOC XML or COCO JSON.

Boxes are kept as corners normalized to the image (``xmin, ymin, xmax, ymax`` in [0, 1]), so they
survive any resize of the whole image unchanged. Localization runs store each image squashed to
the model's square input (no centre crop that could cut the object off), and a prediction in
original-image pixels is the normalized box times the image's width and height.

Mistakes in the annotation file itself (an unreadable file, a missing column, a label that is no
class folder) are one-line errors. Problems of one image (no box, several boxes, a box outside the
image or with no area, an annotated file that does not exist) leave that image out, named with the
reason in the run's list of skipped files.
"""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from cnnkit.data.folders import DatasetSplits, ImageList
from cnnkit.errors import CnnkitError

BOXES_CSV = "boxes.csv"
CSV_COLUMNS = ("path", "label", "xmin", "ymin", "xmax", "ymax")
BOX_SKIP = "box: "  # starts the skip reason of a readable image left out for want of one good box
EDGE_TOLERANCE = 1.0  # pixels a box may pass the image edge (VOC's 1-based corners) before it is refused


@dataclass
class Annotations:
    """Per image file (normalized absolute path): its box in pixels, the annotated label and image size."""

    source: str  # the file they were read from, for messages
    boxes: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (width, height) the file states

    def add(self, path: str, label: str | None, box: tuple[float, ...], size: tuple[int, int] | None) -> None:
        self.boxes.setdefault(path, []).append(tuple(float(v) for v in box))  # type: ignore[arg-type]
        if label is not None:
            self.labels[path] = label
        if size is not None:
            self.sizes[path] = size


def _key(root: Path, path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(root / path))


def read_csv_boxes(path: Path, root: Path) -> Annotations:
    """``path,label,xmin,ymin,xmax,ymax[,width,height]`` with paths relative to ``root``."""
    annotations = Annotations(str(path))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in CSV_COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise CnnkitError(f"{path} lacks the column(s) {', '.join(missing)}; its header must be "
                              f"{','.join(CSV_COLUMNS)}[,width,height]")  # fmt: skip
        for line, row in enumerate(reader, start=2):
            try:
                box = tuple(float(row[name]) for name in CSV_COLUMNS[2:])
                size = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
            except (TypeError, ValueError):
                raise CnnkitError(f"{path} line {line}: box corners and sizes must be numbers") from None
            annotations.add(_key(root, row["path"]), row["label"], box, size)
    return annotations


def _voc_file(path: Path, root: Path, annotations: Annotations) -> None:
    try:
        tree = ElementTree.parse(path).getroot()
        name = tree.findtext("filename") or path.with_suffix(".jpg").name
        folder_path = Path(tree.findtext("path") or "")
        image = next((p for p in (path.with_name(name), root / folder_path.parent.name / name) if p.is_file()), None)
        size = tree.find("size")
        wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
        objects = tree.findall("object")
        key = _key(root, image if image is not None else path.with_name(name))
        annotations.boxes.setdefault(key, [])
        for obj in objects:
            bndbox = obj.find("bndbox")
            box = tuple(float(bndbox.findtext(corner)) for corner in ("xmin", "ymin", "xmax", "ymax"))
            annotations.add(key, obj.findtext("name"), box, wh)
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise CnnkitError(f"{path} is not a Pascal VOC annotation ({exc}); fix or remove it") from None


def read_voc_boxes(files: list[Path], root: Path) -> Annotations:
    """LabelImg's Pascal VOC files: one XML per image, its ``object``s with ``bndbox`` corners."""
    annotations = Annotations(str(files[0].parent if len(files) > 1 else files[0]))
    for path in files:
        _voc_file(path, root, annotations)
    return annotations


def read_coco_boxes(path: Path, root: Path) -> Annotations:
    """A COCO JSON file: ``images`` (file_name, width, height), ``annotations`` (bbox x, y, w, h), ``categories``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        images = {image["id"]: image for image in data["images"]}
        annotations = Annotations(str(path))
        for image in images.values():
            annotations.boxes.setdefault(_key(root, image["file_name"]), [])
        for item in data["annotations"]:
            image = images[item["image_id"]]
            x, y, w, h = (float(v) for v in item["bbox"])
            annotations.add(_key(root, image["file_name"]), categories.get(item.get("category_id")),
                            (x, y, x + w, y + h), (int(image["width"]), int(image["height"])))  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise CnnkitError(f"{path} is not a COCO annotation file ({type(exc).__name__}: {exc})") from None
    return annotations


def find_annotations(root: str | Path, boxes: str | Path | None = None) -> Annotations | None:
    """The annotations ``boxes`` names (CSV, COCO JSON, a VOC XML folder), else ``root/boxes.csv``, else None."""
    root = Path(root)
    if boxes is None:
        default = root / BOXES_CSV
        return read_csv_boxes(default, root) if default.is_file() else None
    path = Path(boxes)
    if path.is_dir():
        files = sorted(path.rglob("*.xml"))
        if not files:
            raise CnnkitError(f"--boxes {path} holds no Pascal VOC .xml files")
        return read_voc_boxes(files, root)
    if not path.is_file():
        raise CnnkitError(f"--boxes {path} does not exist; give boxes.csv, a COCO .json or a folder of VOC .xml files")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_coco_boxes(path, root)
    if suffix == ".xml":
        return read_voc_boxes([path], root)
    return read_csv_boxes(path, root)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) as decoded, EXIF orientation applied, from the header only."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def pixel_box(box: torch.Tensor | list[float], width: int, height: int) -> list[float]:
    """Normalized corners -> pixel corners of an image ``width`` x ``height`` (localization squashes, never crops)."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    return [round(xmin * width, 1), round(ymin * height, 1), round(xmax * width, 1), round(ymax * height, 1)]


def _checked_box(annotations: Annotations, key: str, size: tuple[int, int]) -> tuple[list[float] | None, str]:
    """The normalized box of one image, or None and why it is left out."""
    boxes = annotations.boxes.get(key, [])
    if not boxes:
        return None, f"no box in {annotations.source}"
    if len(boxes) > 1:
        return None, f"{len(boxes)} boxes in {annotations.source}; localization takes one object per image"
    stated = annotations.sizes.get(key)
    if stated is not None and tuple(stated) != size:
        return None, f"{annotations.source} says {stated[0]}x{stated[1]} but the image is {size[0]}x{size[1]}"
    xmin, ymin, xmax, ymax = boxes[0]
    width, height = size
    tol = EDGE_TOLERANCE
    if min(xmin, ymin) < -tol or xmax > width + tol or ymax > height + tol:
        return None, f"box {xmin:g},{ymin:g},{xmax:g},{ymax:g} lies outside the {width}x{height} image"
    if xmax <= xmin or ymax <= ymin:
        return None, f"box {xmin:g},{ymin:g},{xmax:g},{ymax:g} has no area (xmax <= xmin or ymax <= ymin)"
    corners = [xmin / width, ymin / height, xmax / width, ymax / height]
    return [min(max(value, 0.0), 1.0) for value in corners], ""


@dataclass
class BoxedSplit:
    """A split with a box for every image, and the images left out for want of a good one."""

    images: ImageList
    boxes: dict[str, list[float]]  # source -> normalized corners


def _box_split(split: ImageList, annotations: Annotations, classes: list[str]) -> BoxedSplit:
    kept, boxes, skipped = [], {}, dict(split.skipped)
    for index, source in enumerate(split.sources):
        key = os.path.normpath(os.path.abspath(source))
        label = annotations.labels.get(key)
        if label is not None and label != classes[split.labels[index]]:
            if label not in classes:
                raise CnnkitError(f"{annotations.source}: label {label!r} of {source} is no class folder "
                                  f"({', '.join(classes)}); fix the label or the folder")  # fmt: skip
            raise CnnkitError(f"{annotations.source}: {source} is labelled {label!r} but lies in the folder "
                              f"of {classes[split.labels[index]]!r}; move the file or fix the label")  # fmt: skip
        try:
            box, why = _checked_box(annotations, key, image_size(source)) if key in annotations.boxes else (
                None, f"no box in {annotations.source}")  # fmt: skip
            why = BOX_SKIP + why
        except OSError as exc:
            box, why = None, f"unreadable image ({exc})"
        if box is None:
            skipped[source] = why
        else:
            kept.append(index)
            boxes[source] = box
    images = split.subset(kept)
    images.skipped = skipped
    return BoxedSplit(images, boxes)


def attach_boxes(dataset: DatasetSplits, annotations: Annotations) -> tuple[DatasetSplits, dict[str, list[float]]]:
    """The dataset with every image lacking one good box left out (named in ``skipped``), and every kept box."""
    known = {os.path.normpath(os.path.abspath(s)) for part in (dataset.train, dataset.val, dataset.test)
             if part is not None for s in part.sources}  # fmt: skip
    unknown_labels = sorted({label for label in annotations.labels.values() if label not in dataset.classes})
    if unknown_labels:
        raise CnnkitError(f"{annotations.source}: label {unknown_labels[0]!r} is no class folder of {dataset.root} "
                          f"({', '.join(dataset.classes)}); fix the label or add the folder")  # fmt: skip
    boxes: dict[str, list[float]] = {}
    parts = {}
    for name in ("train", "val", "test"):
        split = getattr(dataset, name)
        if split is not None:
            boxed = _box_split(split, annotations, dataset.classes)
            parts[name], boxes = boxed.images, {**boxes, **boxed.boxes}
    absent = sorted(path for path in annotations.boxes if path not in known)
    notes = list(dataset.notes)
    if absent:
        shown = ", ".join(os.path.relpath(path, dataset.root) for path in absent[:5])
        notes.append(f"{len(absent)} annotated file(s) are not images of the dataset and were ignored: {shown}")
    return replace(dataset, notes=notes, **parts), boxes


def box_tensor(sources: list[str], boxes: dict[str, list[float]]) -> torch.Tensor:
    """(N, 4) float32 normalized corners of ``sources``, in order."""
    return torch.tensor([boxes[source] for source in sources], dtype=torch.float32).reshape(-1, 4)


def resolve_task(
    task: str, boxes_file: str | None, dataset: DatasetSplits
) -> tuple[str, DatasetSplits, dict[str, list[float]] | None]:
    """(``classify`` or ``localize``, the dataset kept for it, the boxes): ``auto`` localizes when boxes are found."""
    if task == "classify":
        return task, dataset, None
    annotations = find_annotations(dataset.root, boxes_file)
    if annotations is None:
        if task == "localize":
            raise CnnkitError(f"--task localize needs box annotations: put {BOXES_CSV} in {dataset.root} "
                              "or give --boxes FILE")  # fmt: skip
        return "classify", dataset, None
    dataset, boxes = attach_boxes(dataset, annotations)
    return "localize", dataset, boxes
