"""TorchScript: a traced module for C++ (libtorch) and mobile runtimes, with its metadata as an extra file.

Tracing records the operations run on an example batch; cnnkit models have no data-dependent
control flow, so the trace is the whole model, and the batch size stays free.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnkit.export.network import ExportedClassifier, ExportedPredictor
from cnnkit.fileio import atomic_path
from cnnkit.models.config import Preprocessing

METADATA_FILE = "cnnkit.json"


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence tracer warnings and torch.jit's deprecation notice; the export card carries that note instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
        yield


def export_torchscript(
    network: ExportedClassifier, example: torch.Tensor, path: Path, metadata: dict[str, Any]
) -> None:
    """Trace ``network`` on ``example`` and save it atomically, ``metadata`` as the extra file ``cnnkit.json``."""
    with quiet_jit(), torch.no_grad():
        # check_trace re-runs and compares the graph (4x the tracing time); the export's parity check does more
        traced = torch.jit.trace(network.eval(), example, check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(metadata)})


@dataclass
class TorchScriptPredictor(ExportedPredictor):
    """A saved TorchScript model with the same ``probabilities`` interface as ``Predictor``."""

    module: Any = None
    task: str = "classify"  # or "localize": the module returns (probabilities, boxes)

    @property
    def localizes(self) -> bool:
        return self.task == "localize"

    @classmethod
    def load(cls, path: str | Path) -> TorchScriptPredictor:
        extra = {METADATA_FILE: ""}
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        metadata = json.loads(extra[METADATA_FILE])
        preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
        return cls(metadata["classes"], preprocessing, metadata["input_kind"], module, metadata.get("task", "classify"))

    @torch.inference_mode()
    def run_outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.module(inputs)
        return tuple(outputs) if isinstance(outputs, tuple | list) else (outputs,)
