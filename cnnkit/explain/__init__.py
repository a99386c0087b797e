"""Look inside a convnet: Grad-CAM heatmaps, intermediate activations and filter patterns.

- :mod:`~cnnkit.explain.gradcam`: where in an image the evidence for a class lies
  (:func:`explain_image`, :func:`gradcam_overlay`, batched :func:`class_activation_maps`).
- :mod:`~cnnkit.explain.activations`: every channel of the first layers' outputs for one image.
- :mod:`~cnnkit.explain.filters`: the input pattern each filter responds to most.

All of them hook into ``model.features`` of a :class:`~cnnkit.models.classifier.Classifier`, so
they work on every registry model and on trained runs alike.
"""

from cnnkit.explain.activations import LayerActivation, image_activations, layer_activations, plot_activations
from cnnkit.explain.filters import FilterPatterns, filter_patterns, plot_filter_patterns
from cnnkit.explain.gradcam import (
    METHODS,
    ClassActivationMaps,
    Explanation,
    class_activation_maps,
    explain_image,
    gradcam_overlay,
    upsample,
)
from cnnkit.explain.overlay import overlay_heatmap, save_png
from cnnkit.explain.source import Subject, class_index, open_subject, read_image

__all__ = [
    "METHODS",
    "ClassActivationMaps",
    "Explanation",
    "FilterPatterns",
    "LayerActivation",
    "Subject",
    "class_activation_maps",
    "class_index",
    "explain_image",
    "filter_patterns",
    "gradcam_overlay",
    "image_activations",
    "layer_activations",
    "open_subject",
    "overlay_heatmap",
    "plot_activations",
    "plot_filter_patterns",
    "read_image",
    "save_png",
    "upsample",
]
