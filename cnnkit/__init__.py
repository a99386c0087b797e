"""cnnkit: from a folder of labelled images to a trained, evaluated and shipped convnet classifier.

The main calls, each also a CLI command::

    run = cnnkit.train("digits", model="lenet5")        # cnnkit train digits --model lenet5
    cnnkit.evaluate(run.path)                            # cnnkit evaluate runs/digits-lenet5
    cnnkit.predict(["img.jpg"], run=run.path)            # cnnkit predict img.jpg --run ...
    cnnkit.predict(["img.jpg"], model="efficientnet_lite0")  # ImageNet labels, as-is
    cnnkit.tune("photos", model="efficientnet_lite0")    # cnnkit tune photos --model ...

Attributes are imported lazily so that ``import cnnkit`` and ``cnnkit --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnkit._lazy import lazy_attribute

__version__ = "0.1.0"

_EXPORTS = {
    "train": "cnnkit.train",
    "tune": "cnnkit.tune",
    "load_run": "cnnkit.run",
    "Run": "cnnkit.run",
    "evaluate": "cnnkit.evaluate",
    "export": "cnnkit.export",
    "predict": "cnnkit.inference",
    "Predictor": "cnnkit.predictor",
    "create_model": "cnnkit.models.registry",
    "list_models": "cnnkit.models.registry",
    "summarize": "cnnkit.models.summary",
    "load_dataset": "cnnkit.data.datasets",
    "CnnkitError": "cnnkit.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in ("train", "tune", "evaluate", "export"):  # callable packages, see cnnkit._callable
        return importlib.import_module(f"cnnkit.{name}")
    return lazy_attribute(__name__, _EXPORTS, name)
