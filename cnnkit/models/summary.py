"""A Keras-style model summary: one row per layer with output shape and parameter count.

Shapes are shown channels-last, ``(None, H, W, C)``, as in the Keras books by default, so the
numbers can be checked line by line against them; ``channels_last=False`` shows PyTorch's NCHW.
Parameter counts are PyTorch's: BatchNorm running statistics are buffers, not parameters (Keras
counts them as non-trainable parameters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from cnnkit.models.probe import probe

_SKIPPED = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid, nn.Identity, nn.Flatten)


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: list[int | None]
    params: int
    trainable: bool


@dataclass
class Summary:
    model: str
    input_shape: list[int | None]
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    non_trainable_params: int

    def to_dict(self) -> dict:
        return asdict(self)


def _shape(tensor: torch.Tensor, channels_last: bool) -> list[int | None]:
    dims = list(tensor.shape[1:])
    if channels_last and len(dims) == 3:
        dims = [dims[1], dims[2], dims[0]]
    return [None, *dims]


def summarize(model: nn.Module, input_size: int, channels: int = 3, channels_last: bool = True) -> Summary:
    """Run one dummy image through ``model`` and record each leaf layer's output."""
    rows: list[LayerRow] = []
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                params = list(module.parameters(recurse=False))
                rows.append(
                    LayerRow(
                        name=name,
                        type=type(module).__name__,
                        output_shape=_shape(output, channels_last),
                        params=sum(p.numel() for p in params),
                        trainable=any(p.requires_grad for p in params),
                    )
                )

        return hook

    for name, module in model.named_modules():
        is_leaf = not any(True for _ in module.children())
        if is_leaf and not isinstance(module, _SKIPPED):
            hooks.append(module.register_forward_hook(record(name)))
    probe(model, hooks, input_size, channels)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    input_shape = (
        [None, input_size, input_size, channels] if channels_last else [None, channels, input_size, input_size]
    )
    return Summary(
        getattr(model, "model_name", type(model).__name__), input_shape, rows, total, trainable, total - trainable
    )


def format_shape(shape: list[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
