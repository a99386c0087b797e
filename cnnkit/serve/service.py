"""The service's state and request work shared by every route: reading images, decoding them, batching them.

Parsing and decoding run on a pool of one thread per core and inference on the batcher's thread, so
the event loop only moves bytes and answers; a health check never waits behind a batch. The pool is
kept that small on purpose: more decoding threads than cores only take turns with ONNX Runtime's own
threads, and a parallel operator that loses a core to one of them waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from starlette.requests import Request

from cnnkit.serve.batcher import Answer, MicroBatcher
from cnnkit.serve.limits import Limits, check_image_header, malformed, read_body, too_large, unsupported
from cnnkit.serve.model import ServedModel
from cnnkit.serve.multipart import multipart_parts

RAW_BODY_TYPES = ("", "application/octet-stream")
WARM_UP_BATCHES = (1, 2)
Result = TypeVar("Result")
CURL_HINT = "curl -F file=@cat.jpg URL, or --data-binary @cat.jpg -H 'Content-Type: image/jpeg'"


@dataclass(frozen=True)
class ServeOptions:
    """How the service batches and what it accepts."""

    max_batch: int = 32
    max_wait_ms: float = 5.0
    limits: Limits = field(default_factory=Limits)
    model_batch: int | None = None  # images per forward pass; None: the fastest per image, measured at warm-up


@dataclass
class NamedImage:
    """An image from a request: where it came from (a file name, or ``body``) and its encoded bytes."""

    name: str
    data: bytes


class Service:
    """One model behind the routes: its batcher, readiness and the steps from request bytes to answers."""

    def __init__(self, model: ServedModel, options: ServeOptions) -> None:
        self.model, self.options, self.limits = model, options, options.limits
        self.model_batch = options.model_batch
        self.batcher = MicroBatcher(
            self.run_model,
            max_batch=options.max_batch,
            max_wait_s=options.max_wait_ms / 1000,
            timeout_s=options.limits.timeout_s,
            max_queued=options.limits.max_queued_images,
        )
        self.ready = False
        self._workers: ThreadPoolExecutor | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Start batching, warm the model up in the background (``/readyz`` says when), stop on shutdown."""
        self._workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="cnnkit-decode")
        self.batcher.start()
        warm_up = asyncio.get_running_loop().create_task(self._warm_up())
        try:
            yield
        finally:
            warm_up.cancel()
            self.ready = False
            await self.batcher.stop()
            self._workers.shutdown(wait=True)

    async def off_loop(self, work: Callable[..., Result], *args: Any) -> Result:
        """Run request work (parsing, decoding) on the worker pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._workers, work, *args)

    async def _warm_up(self) -> None:
        sizes = tuple(sorted({1, *WARM_UP_BATCHES, self.options.max_batch}))
        await self.batcher.run_in_model_thread(self.model.warm_up, sizes)
        if self.model_batch is None:
            self.model_batch = await self.batcher.run_in_model_thread(self.model.fastest_batch, self.options.max_batch)
        self.ready = True

    def run_model(self, images: torch.Tensor) -> torch.Tensor:
        """One gathered batch through the model, ``model_batch`` images a forward pass (on the inference thread)."""
        return self.model.probabilities(images, self.model_batch)

    async def request_images(self, request: Request) -> list[NamedImage]:
        """The images of a request: every file part of a multipart form, or the whole body as one image.

        Parsing runs on a worker thread: a 10 MB form would otherwise hold up the event loop.
        """
        body = await read_body(request, self.limits.max_body_bytes)
        return await self.off_loop(self.body_images, body, request.headers.get("content-type", ""))

    def body_images(self, body: bytes, content_type: str) -> list[NamedImage]:
        kind = content_type.split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            parts = [part for part in multipart_parts(body, content_type) if part.is_image]
            if not parts:
                raise malformed(f"the form has no image; send it as a file field named 'file' ({CURL_HINT})")
            images = [NamedImage(part.filename or part.name, part.data) for part in parts]
        elif kind in RAW_BODY_TYPES or kind.startswith("image/"):
            if not body:
                raise malformed(f"the body is empty; send an image ({CURL_HINT})")
            images = [NamedImage("body", body)]
        else:
            raise unsupported(f"Content-Type {kind} is not an image; send multipart/form-data or image/* ({CURL_HINT})")
        return self.count_checked(images)

    def count_checked(self, images: list[NamedImage]) -> list[NamedImage]:
        if len(images) > self.limits.max_images:
            raise too_large(f"{len(images)} images in one request; the limit is {self.limits.max_images}")
        return images

    def decode(self, image: NamedImage, max_pixels: int | None = None) -> torch.Tensor:
        """Header checks (format, pixel budget), then the full decode; runs on a worker thread."""
        check_image_header(image.data, max_pixels or self.limits.max_pixels, image.name)
        try:
            return self.model.decode(image.data)
        except Exception as exc:  # the header was fine but the pixels are not: a truncated or corrupt file
            detail = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
            detail = detail.rsplit(", ", 1)[-1] if ".cpp:" in detail else detail  # drop torchvision's source location
            raise unsupported(f"{image.name} could not be decoded ({detail[:200]})") from exc

    def prepared(self, images: list[NamedImage]) -> list[torch.Tensor]:
        return [self.model.prepare(self.decode(image)) for image in images]

    async def classify(
        self, read_images: Callable[[], Awaitable[list[NamedImage]]]
    ) -> tuple[list[NamedImage], list[Answer], dict[str, float]]:
        """Read (with ``read_images``), decode and batch a request's images; returns them, their answers and
        where the time went. The batcher knows the request is coming from its first byte on."""
        started = time.perf_counter()
        async with self.batcher.incoming() as submit:
            images = await read_images()
            read = time.perf_counter()
            tensors = await self.off_loop(self.prepared, images)
            decoded = time.perf_counter()
            answers = await submit(tensors)
        finished = time.perf_counter()
        timing = {
            "read_ms": round((read - started) * 1000, 3),
            "decode_ms": round((decoded - read) * 1000, 3),
            **max(answers, key=lambda answer: answer.batch.finished).timing(),
            "total_ms": round((finished - started) * 1000, 3),
        }
        return images, answers, timing

    def top(self, probabilities: torch.Tensor, top_k: int) -> list[dict]:
        """The ``top_k`` labels of one image, best first, as ``cnnkit predict`` reports them."""
        values, indices = probabilities.topk(min(top_k, len(self.model.classes)))
        return [
            {"label": self.model.classes[int(i)], "index": int(i), "probability": float(p)}
            for p, i in zip(values, indices, strict=True)
        ]

    async def explain(self, request: Request, class_name: str | None) -> dict:
        """Grad-CAM for the one image of a request, on the inference thread between batches."""
        explainer = self.model.explainer
        assert explainer is not None
        images = await self.request_images(request)
        if len(images) != 1:
            raise too_large(f"/explain takes one image per request, not {len(images)}")
        index = None if class_name is None else explainer.class_index(class_name)
        budget = min(self.limits.max_pixels, self.limits.max_explain_pixels)
        image = await self.off_loop(self.decode, images[0], budget)
        return await self.batcher.run_in_model_thread(explainer.explain, image, index)
