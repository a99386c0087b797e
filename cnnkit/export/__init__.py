"""Shipping a trained run: ONNX (optionally int8), Core ML and TorchScript, each verified against the original.

The package itself is callable: ``cnnkit.export(...)`` is :func:`cnnkit.export.exporter.export`.
"""

from cnnkit._callable import make_package_callable
from cnnkit.export.card import ModelMetadata
from cnnkit.export.exporter import FORMATS, ExportResult, export
from cnnkit.export.onnx import OnnxPredictor
from cnnkit.export.torchscript import TorchScriptPredictor

__all__ = ["FORMATS", "ExportResult", "ModelMetadata", "OnnxPredictor", "TorchScriptPredictor", "export"]

make_package_callable(__name__, export)
