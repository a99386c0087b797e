"""ONNX: one self-contained file with a dynamic batch, its classes and preprocessing in the metadata.

The file alone is enough to use the model: :class:`OnnxPredictor` (and ``cnnkit predict --onnx``)
reads class names, preprocessing and the input kind from ``metadata_props``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from cnnkit.errors import CnnkitError
from cnnkit.export.card import METADATA_PREFIX
from cnnkit.export.network import ExportedClassifier, ExportedPredictor
from cnnkit.fileio import atomic_path
from cnnkit.models.config import Preprocessing

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
BOXES_NAME = "boxes"  # localization runs: (N, 4) corners in [0, 1] of the whole image
SINGLE_FILE_LIMIT = 2**31 - 1  # protobuf's limit; beyond it ONNX needs side files


def to_onnx(network: ExportedClassifier, example: torch.Tensor, boxes: bool = False) -> onnx.ModelProto:
    """Export through ``torch.export`` with the batch dimension left dynamic; ``boxes``: a second output."""
    program = torch.onnx.export(
        network,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME, BOXES_NAME] if boxes else [OUTPUT_NAME],
        opset_version=OPSET,
        dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
        verbose=False,
    )
    return program.model_proto


def write_onnx(proto: onnx.ModelProto, path: Path, metadata_props: dict[str, str], description: str | None) -> None:
    """Attach metadata and save as one file, atomically."""
    del proto.metadata_props[:]
    for key, value in metadata_props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = description or ""
    if proto.ByteSize() > SINGLE_FILE_LIMIT:
        raise CnnkitError(f"the model is over ONNX's 2 GB single-file limit; {path} would need side files")
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def check_onnx(path: Path) -> dict[str, Any]:
    """``onnx.checker`` (with shape inference), opset, single file and a symbolic batch dimension."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        error = None
    except onnx.checker.ValidationError as exc:
        error = str(exc).splitlines()[0]
    proto = onnx.load(str(path), load_external_data=False)
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    result: dict[str, Any] = {
        "onnx_checker": error is None,
        "opset": max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")),
        "single_file": not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer),
        "dynamic_batch": bool(batch.dim_param),
    }
    if error:
        result["onnx_checker_error"] = error
    return result


def inference_session(path: Path) -> Any:
    """An ONNX Runtime CPU session; an unreadable file is a one-line error naming it."""
    import onnxruntime

    if not Path(path).is_file():
        raise CnnkitError(f"ONNX model {path} does not exist")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # Idle worker threads would otherwise spin after each run and steal the CPU from whatever runs next:
    # alternating with PyTorch on 2 busy cores, spinning made PyTorch 2.5x and ONNX Runtime itself 1.9x slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's errors derive from Exception only
        raise CnnkitError(f"cannot load {path} as an ONNX model ({str(exc).splitlines()[0]})") from exc


@dataclass
class OnnxPredictor(ExportedPredictor):
    """An exported ONNX model in ONNX Runtime, with the same ``probabilities`` interface as ``Predictor``."""

    session: Any = None

    @property
    def localizes(self) -> bool:
        return BOXES_NAME in [output.name for output in self.session.get_outputs()]

    @classmethod
    def load(cls, path: str | Path) -> OnnxPredictor:
        session = inference_session(Path(path))
        props = session.get_modelmeta().custom_metadata_map
        needed = [METADATA_PREFIX + key for key in ("classes", "preprocessing", "input_kind")]
        if not all(key in props for key in needed):
            raise CnnkitError(f"{path} lacks cnnkit metadata (classes, preprocessing); export it with 'cnnkit export'")
        return cls(
            json.loads(props[needed[0]]),
            Preprocessing.from_dict(json.loads(props[needed[1]])),
            props[needed[2]],
            session,
        )

    def run_outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [OUTPUT_NAME, BOXES_NAME] if self.localizes else [OUTPUT_NAME]
        return tuple(torch.from_numpy(output) for output in self.session.run(names, {INPUT_NAME: inputs.numpy()}))
