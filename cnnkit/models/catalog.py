"""The facts ``cnnkit models`` shows for each registry entry, computed without real weights.

Models are built on PyTorch's ``meta`` device: shapes and parameter counts without allocating
memory, so even VGG-19 costs milliseconds.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnkit.models.registry import create_model, list_models


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_models() -> list[dict[str, Any]]:
    from cnnkit.models.flops import count_macs

    rows = []
    for info in list_models():
        size = info.preprocessing.input_size
        with torch.device("meta"):
            model = create_model(info.name, 1000)
            params = count_parameters(model)
            macs = count_macs(model, size, info.preprocessing.channels)
        rows.append(
            {
                "name": info.name,
                "family": info.family,
                "input_size": size,
                "channels": info.preprocessing.channels,
                "params": params,
                "gmacs": macs / 1e9,
                "pretrained": info.pretrained,
                "imagenet_top1": info.imagenet_top1,
                "description": info.description,
            }
        )
    return rows
