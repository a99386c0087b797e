"""``cnnkit serve``: options and checks only; the service is :mod:`cnnkit.serve`.

Heavy imports stay inside the function so that ``cnnkit --help`` stays fast.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnkit.cli.output import console
from cnnkit.errors import CnnkitError

if TYPE_CHECKING:
    from cnnkit.serve import ServeOptions


class Engine(StrEnum):
    onnx = "onnx"
    torch = "torch"


def check_options(port: int, max_wait_ms: float, positive: dict[str, float | None]) -> None:
    """Each option in its range, or a one-line error naming it (``positive``: options given as > 0, or None)."""
    if not 0 <= port <= 65535:
        raise CnnkitError(f"--port must be between 0 and 65535, not {port}")
    for option, value in positive.items():
        if value is not None and value <= 0:
            raise CnnkitError(f"{option} must be positive, not {value:g}")
    if max_wait_ms < 0:
        raise CnnkitError(f"--max-wait-ms must be 0 or more, not {max_wait_ms:g}")


def service_options(
    max_batch: int,
    max_wait_ms: float,
    model_batch: int | None,
    max_body_mb: float,
    max_megapixels: float,
    max_images: int,
    timeout: float,
) -> ServeOptions:
    """The checked options as the service takes them."""
    from cnnkit.serve import Limits, ServeOptions

    limits = Limits(
        max_body_bytes=int(max_body_mb * 1_000_000),
        max_pixels=int(max_megapixels * 1_000_000),
        max_images=max_images,
        timeout_s=timeout,
    )
    return ServeOptions(max_batch=max_batch, max_wait_ms=max_wait_ms, limits=limits, model_batch=model_batch)


def serve(
    target: Annotated[
        Path, typer.Argument(metavar="RUN | MODEL.onnx", help="A run folder, or an ONNX file from 'cnnkit export'.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens the service to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own copy of the model.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Most images run together; 1 turns micro-batching off.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(help="Longest an idle model waits for requests already arriving to fill a batch.")
    ] = 5.0,
    model_batch: Annotated[
        int | None, typer.Option(help="Images per forward pass; default: the fastest per image, measured at start.")
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="onnx (ONNX Runtime; a run is exported into RUN/export first if needed) or torch.")
    ] = Engine.onnx,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MB (413 beyond).")] = 10.0,
    max_megapixels: Annotated[
        float,
        typer.Option(
            help="Megapixels per image, read from its header before decoding (413 beyond; /explain: 16 at most)."
        ),
    ] = 40.0,
    max_images: Annotated[int, typer.Option(help="Most images in one request (413 beyond).")] = 16,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for the model (503 beyond).")] = 30.0,
) -> None:
    """Serve a model over HTTP: POST /predict, POST /explain (runs), KServe v2 under /v2, a page at /, docs at /docs.

    Concurrent requests are micro-batched: gathered into one batch of at most --max-batch images,
    run once off the event loop, each answered with its own result. Bad requests get a JSON error,
    never a 500: 413 (too large, too many pixels or images), 415 (not an image), 422 (malformed),
    503 with Retry-After (waited past --timeout).
    """
    limits = {"--max-body-mb": max_body_mb, "--max-megapixels": max_megapixels, "--max-images": max_images}
    batching = {"--workers": workers, "--max-batch": max_batch, "--model-batch": model_batch}
    check_options(port, max_wait_ms, {**batching, **limits, "--timeout": timeout})
    from cnnkit.serve import resolve_source
    from cnnkit.serve import serve as run_service

    source = resolve_source(target, engine.value)
    options = service_options(max_batch, max_wait_ms, model_batch, max_body_mb, max_megapixels, max_images, timeout)
    console.print(
        f"serving [bold]{target}[/] on {'ONNX Runtime' if source.engine == 'onnx' else 'PyTorch'}: "
        f"http://{host}:{port}/ (page), /docs (API), /v2 (KServe v2)",
        highlight=False,
        soft_wrap=True,
    )
    run_service(source, options, host=host, port=port, workers=workers)
