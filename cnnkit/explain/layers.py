"""Find a network's layers by what they output, and catch those outputs with forward hooks.

Layers are named as in ``model.named_modules()``, the names ``cnnkit summary`` prints
(``features.10``, ``features.blocks.6.0.conv_pwl``), so a name seen in the summary can be passed
to ``--layer``.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.classifier import Classifier


@dataclass(frozen=True)
class LayerCall:
    """One finished forward call of a module: its name and the shape of what it returned."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]

    @property
    def is_spatial(self) -> bool:
        """A (N, C, H, W) map with more than one position: something a heatmap can be drawn from."""
        return len(self.shape) == 4 and min(self.shape[2:]) > 1


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the outputs it needs are in hand."""


def feature_modules(model: Classifier) -> dict[str, nn.Module]:
    """Every module inside ``model.features`` (the extractor itself excluded), by its full name."""
    return {f"features.{name}": module for name, module in model.features.named_modules() if name}


def trace_calls(model: Classifier, inputs: torch.Tensor) -> list[LayerCall]:
    """Run ``inputs`` through ``model.features`` and list every module call in the order the calls finish.

    A container finishes after its children, so the last call producing a map is the outermost
    block that produces it (a ResNet stage, a conv+ReLU pair), not a layer inside it.
    """
    calls: list[LayerCall] = []

    def record(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                calls.append(LayerCall(name, module, tuple(output.shape)))

        return hook

    handles = [module.register_forward_hook(record(name, module)) for name, module in feature_modules(model).items()]
    try:
        with eval_mode(model), torch.no_grad():
            model.features(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def last_spatial_layer(model: Classifier, inputs: torch.Tensor) -> str:
    """Name of the last module of ``model.features`` whose output is a map larger than 1x1: Grad-CAM's default."""
    spatial = [call.name for call in trace_calls(model, inputs) if call.is_spatial]
    if not spatial:
        raise CnnkitError(
            f"{getattr(model, 'model_name', 'this model')} has no layer with a spatial output at "
            f"{inputs.shape[-1]} px, so there is nothing to draw a heatmap from"
        )
    return spatial[-1]


def get_layer(model: Classifier, name: str) -> nn.Module:
    """The module called ``name``, or a one-line error with the closest names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise CnnkitError(f"no layer named {name!r}.{hint} 'cnnkit summary MODEL' lists the layer names.")


@contextlib.contextmanager
def capture_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect what ``module`` returns, one tensor per call, while the block runs.

    The network continues with a copy, so an in-place operation further on (``ReLU(inplace=True)``)
    cannot overwrite the captured tensor, and gradients with respect to it stay exact.
    """
    outputs: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs, output):
        if isinstance(output, torch.Tensor):
            outputs.append(output)
            return output.clone()
        return None

    handle = module.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def run_until(model: Classifier, inputs: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``module``'s output on its first call, without computing the rest of the network."""
    outputs: list[torch.Tensor] = []

    def stop(_module: nn.Module, _inputs, output) -> None:
        outputs.append(output)
        raise _Stop

    handle = module.register_forward_hook(stop)
    try:
        model.features(inputs)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not outputs or not isinstance(outputs[0], torch.Tensor):
        raise CnnkitError("that layer is not used by the feature extractor; pick one from 'cnnkit summary MODEL'")
    return outputs[0]


def collect_first_calls(
    model: Classifier, inputs: torch.Tensor, modules: dict[str, nn.Module], count: int
) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """The first ``count`` spatial outputs of ``modules``, in the order the network computes them, then stop.

    Each output is copied as it is made, so a later in-place activation does not change it.
    Outputs that are not maps larger than 1x1 (a ReLU after a dense layer) are skipped.
    """
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []

    def record(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs, output) -> None:
            seen = any(call[0] == name for call in calls)  # a module run twice (ResNet's ReLU) counts once
            if not seen and LayerCall(name, module, tuple(output.shape)).is_spatial:
                calls.append((name, module, output.detach().clone()))
            if len(calls) >= count:
                raise _Stop

        return hook

    handles = [module.register_forward_hook(record(name, module)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            model.features(inputs)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return calls


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (BatchNorm and dropout as at inference) and restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
