"""Inference engines for EfficientNet-Lite0 at 224 px: batch-1 latency and batch-32 throughput.

Engines: PyTorch fp32 eager NCHW, PyTorch channels_last + bf16 autocast, ONNX Runtime fp32 and
ONNX Runtime int8, all in one process and timed in alternation, so that a CPU shared with other
work slows them alike; the targets are ratios within this one run.

The model is a short-trained hymenoptera (ants vs bees) run: a new head on the pretrained base,
three epochs, no fine-tuning. Its 153 validation images measure what int8 costs in accuracy
(one image is 0.65 points). The ONNX files come from ``cnnkit.export``, so they are verified too.
Usage: python -m benchmarks.inference [--head-epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

import cnnkit
from benchmarks._common import DATASETS, report
from cnnkit.data import decode_images
from cnnkit.export import OnnxPredictor, export
from cnnkit.export.network import model_input
from cnnkit.export.verify import compare_latency

BATCH = 32


def torch_engine(model: torch.nn.Module, channels_last_bf16: bool) -> Callable[[torch.Tensor], object]:
    """PyTorch inference on a private copy of ``model``: as cnnkit runs it (channels_last + bf16) or eager fp32 NCHW."""
    memory_format = torch.channels_last if channels_last_bf16 else torch.contiguous_format
    model = copy.deepcopy(model).eval().to(memory_format=memory_format)

    @torch.inference_mode()
    def run(inputs: torch.Tensor) -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=channels_last_bf16):
            return model(inputs.contiguous(memory_format=memory_format))

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--head-epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = cnnkit.train(
            DATASETS / "hymenoptera",
            model="efficientnet_lite0",
            epochs=args.head_epochs,
            fine_tune_epochs=0,
            progress=False,
            out=Path(tmp) / "run",
        )
        fp32 = export(run, "onnx", out=Path(tmp) / "lite0.onnx")
        int8 = export(run, "onnx", out=Path(tmp) / "lite0.int8.onnx", int8=True)
        val = run.load_dataset().val
        images = model_input(decode_images(val, run.preprocessing).images, run.preprocessing, "normalized")
        engines = {
            "PyTorch fp32 eager NCHW": torch_engine(run.load_model(), channels_last_bf16=False),
            "PyTorch channels_last + bf16": torch_engine(run.load_model(), channels_last_bf16=True),
            "ONNX Runtime fp32": OnnxPredictor.load(fp32.path).run_batch,
            "ONNX Runtime int8": OnnxPredictor.load(int8.path).run_batch,
        }
        one, batch = images[:1], images[:BATCH]
        latency = compare_latency({name: (lambda e=engine: e(one)) for name, engine in engines.items()}, rounds=30)
        batch_ms = compare_latency(
            {name: (lambda e=engine: e(batch)) for name, engine in engines.items()}, rounds=4, warmup=1
        )
        sizes = {"ONNX Runtime fp32": fp32.path.stat().st_size, "ONNX Runtime int8": int8.path.stat().st_size}
    throughput = {name: BATCH * 1000 / ms for name, ms in batch_ms.items()}
    eager = throughput["PyTorch fp32 eager NCHW"]
    int8_checks = int8.card["checks"]
    accuracies = {
        "PyTorch fp32 eager NCHW": fp32.card["validation"]["pytorch_fp32_accuracy"],
        "ONNX Runtime fp32": int8_checks["fp32_accuracy"],
        "ONNX Runtime int8": int8_checks["accuracy"],
    }
    rows = [
        {
            "engine": name,
            "batch1_ms": round(latency[name], 2),
            "batch32_img_per_s": round(throughput[name], 1),
            "vs_eager_fp32": round(throughput[name] / eager, 2),
            "file_mb": round(sizes[name] / 1e6, 2) if name in sizes else "-",
            "val_accuracy": f"{accuracies[name]:.2%}" if name in accuracies else "-",
        }
        for name in engines
    ]
    targets = {
        "ONNX Runtime fp32 >= 4x PyTorch fp32 eager at batch 32": throughput["ONNX Runtime fp32"] >= 4 * eager,
        "int8 file <= 30% of fp32": sizes["ONNX Runtime int8"] <= 0.30 * sizes["ONNX Runtime fp32"],
        "int8 loses <= 1 point of validation accuracy": int8_checks["accuracy_change_points"] >= -1.0,
        "fp32 ONNX matches PyTorch (top-1 100%, max diff <= 1e-4)": fp32.passed,
    }
    return 0 if report("inference", "EfficientNet-Lite0 at 224 px, hymenoptera head", rows, targets) else 1


if __name__ == "__main__":
    sys.exit(main())
