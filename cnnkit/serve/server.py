"""Running the app under uvicorn: in this process, in several worker processes, or on a background thread.

With ``workers > 1`` uvicorn starts each worker from an import string, so the resolved model
source and options travel to them in the ``CNNKIT_SERVE`` environment variable; the model was
already exported (if it had to be) by the parent, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI

from cnnkit.errors import CnnkitError
from cnnkit.serve.app import create_app
from cnnkit.serve.limits import Limits
from cnnkit.serve.model import ModelSource, load_served_model
from cnnkit.serve.service import ServeOptions

ENVIRONMENT = "CNNKIT_SERVE"
STARTUP_TIMEOUT_S = 60.0


def options_to_dict(options: ServeOptions) -> dict[str, Any]:
    return asdict(options)


def options_from_dict(data: dict[str, Any]) -> ServeOptions:
    return ServeOptions(data["max_batch"], data["max_wait_ms"], Limits(**data["limits"]), data["model_batch"])


def build_app(source: ModelSource, options: ServeOptions) -> FastAPI:
    """Load the model and wrap it in the service, in a process that does nothing else."""
    if source.engine == "onnx":
        # PyTorch only crops and resizes here, one request per thread: its own intra-op threads made
        # preprocessing 9x slower (1.8 -> 16 ms per photo on 2 busy cores) while ONNX Runtime ran.
        torch.set_num_threads(1)
    return create_app(load_served_model(source), options)


def app_from_environment() -> FastAPI:
    """The uvicorn factory each worker process calls (see the module docstring)."""
    config = os.environ.get(ENVIRONMENT)
    if not config:
        raise CnnkitError(f"{ENVIRONMENT} is not set; start the service with 'cnnkit serve'")
    data = json.loads(config)
    return build_app(ModelSource.from_dict(data["source"]), options_from_dict(data["options"]))


def serve(
    source: ModelSource,
    options: ServeOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Serve until interrupted; several workers each load the model and batch on their own."""
    if workers == 1:
        uvicorn.run(build_app(source, options), host=host, port=port, log_level=log_level)
        return
    os.environ[ENVIRONMENT] = json.dumps({"source": source.to_dict(), "options": options_to_dict(options)})
    uvicorn.run(
        "cnnkit.serve.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` from a thread of this process; yields the base URL.

    For tests, notebooks and benchmarks: the server stops (lifespan shutdown included) when the block ends.
    """
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and
    # with it on, every response waited 40 ms for the client's delayed acknowledgement.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True, name="cnnkit-serve")
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the background server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        listener.close()
