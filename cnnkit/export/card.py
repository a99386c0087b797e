"""``FILE.card.json``: what an exported file is, what it expects, and how well it matched the original."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnkit.fileio import write_json
from cnnkit.run import Run

METADATA_PREFIX = "cnnkit."


@dataclass(frozen=True)
class ModelMetadata:
    """Who made the model and what it is for; stored inside the exported file and in its card."""

    author: str | None = None
    license: str | None = None
    description: str | None = None

    def with_default_description(self, run: Run) -> ModelMetadata:
        if self.description:
            return self
        shown = ", ".join(run.classes[:5]) + (", ..." if len(run.classes) > 5 else "")
        kind = "image classifier with object boxes" if run.facts.task == "localize" else "image classifier"
        text = f"{run.config.model} {kind} for {len(run.classes)} classes ({shown}), trained with cnnkit"
        return ModelMetadata(self.author, self.license, text)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def embedded_metadata(run: Run, input_kind: str, temperature: float, metadata: ModelMetadata) -> dict[str, Any]:
    """What goes inside the exported file: enough to feed the model and name its outputs without the run."""
    return {
        "classes": run.classes,
        "preprocessing": run.preprocessing.to_dict(),
        "input_kind": input_kind,
        "temperature": temperature,
        "task": run.facts.task,
        **{key: value for key, value in metadata.to_dict().items() if value},
    }


def as_string_map(embedded: dict[str, Any]) -> dict[str, str]:
    """Flatten :func:`embedded_metadata` for formats whose metadata maps strings to strings (ONNX, Core ML)."""
    return {
        METADATA_PREFIX + key: value if isinstance(value, str) else json.dumps(value) for key, value in embedded.items()
    }


def card_path(path: Path) -> Path:
    """The card of one exported file, named after the whole file name so that no two formats share a card:
    ``model.onnx`` -> ``model.onnx.card.json``, ``model.int8.onnx`` -> ``model.int8.onnx.card.json``,
    ``model.mlpackage`` -> ``model.mlpackage.card.json``."""
    return path.with_name(path.name + ".card.json")


def file_size(path: Path) -> int:
    """Bytes of a file, or of every file inside a folder such as an ``.mlpackage``."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def write_card(path: Path, card: dict[str, Any]) -> Path:
    """Write the card beside the exported file, atomically."""
    destination = card_path(path)
    write_json(destination, card)
    return destination
