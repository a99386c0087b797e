"""``cnnkit serve``: a trained run or an exported ONNX file behind an HTTP API, with micro-batching.

- :mod:`~cnnkit.serve.model`: what is served (the only module here that imports the run and predictor API);
- :mod:`~cnnkit.serve.batcher`: concurrent requests gathered into one batch, run off the event loop;
- :mod:`~cnnkit.serve.limits`: the 4xx answers (body size, pixel budget, formats, image count);
- :mod:`~cnnkit.serve.app` and :mod:`~cnnkit.serve.v2`: the routes, cnnkit's own and the Open Inference Protocol's;
- :mod:`~cnnkit.serve.server`: uvicorn, in this process, in workers or on a background thread.

``create_app(load_served_model(resolve_source("runs/photos")))`` is the app ``cnnkit serve runs/photos`` runs.
"""

from cnnkit.serve.app import create_app
from cnnkit.serve.limits import Limits, ServeError
from cnnkit.serve.model import ModelSource, ServedModel, load_served_model, resolve_source
from cnnkit.serve.server import background_server, serve
from cnnkit.serve.service import ServeOptions

__all__ = [
    "Limits",
    "ModelSource",
    "ServeError",
    "ServeOptions",
    "ServedModel",
    "background_server",
    "create_app",
    "load_served_model",
    "resolve_source",
    "serve",
]
