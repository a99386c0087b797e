"""Micro-batching: images from concurrent requests run through the model together, once.

One asyncio task gathers queued images into a batch of at most ``max_batch`` and runs it on a
single inference thread, so the event loop keeps answering (health checks included) while the
model works. While a batch runs, newly queued images wait and form the next batch by themselves.

When the model is idle the first image would run alone; the batcher waits (at most ``max_wait_s``
after that image was queued) only while other requests have arrived and are still being read or
decoded. A lone client therefore never waits for company that is not coming, and a busy service
fills its batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnkit.serve.limits import ServeError


@dataclass(frozen=True)
class BatchRun:
    """How one image's batch ran: its size and when it started and ended (``time.perf_counter`` seconds)."""

    size: int
    started: float
    finished: float


@dataclass(frozen=True)
class Answer:
    """One image's probabilities and the batch that computed them."""

    probabilities: torch.Tensor
    queued: float
    batch: BatchRun

    def timing(self) -> dict[str, float]:
        """Milliseconds waiting for the model and in it (the whole batch's run)."""
        return {
            "queue_ms": round((self.batch.started - self.queued) * 1000, 3),
            "inference_ms": round((self.batch.finished - self.batch.started) * 1000, 3),
        }


@dataclass
class _Queued:
    image: torch.Tensor
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers prepared images (C, H, W) from concurrent requests into batches for ``run_batch``."""

    def __init__(
        self,
        run_batch: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        timeout_s: float = 30.0,
        max_queued: int = 1024,
    ) -> None:
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.timeout_s, self.max_queued = timeout_s, max_queued
        self.executor: ThreadPoolExecutor | None = None
        self._queue: deque[_Queued] = deque()
        self._arrived = asyncio.Event()
        self._incoming = 0
        self._last_batch_s = 0.0
        self._task: asyncio.Task | None = None
        self.batches_run = 0

    @property
    def queued(self) -> int:
        """Images waiting for a batch."""
        return len(self._queue)

    async def run_in_model_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        """Run other model work (warm-up, Grad-CAM) on the inference thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    def start(self) -> None:
        """Start batching on the running event loop (each start gets a fresh thread, queue and event)."""
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnkit-inference")
        self._queue, self._arrived, self._incoming = deque(), asyncio.Event(), 0
        self._task = asyncio.get_running_loop().create_task(self._serve_batches(), name="cnnkit-batcher")

    async def stop(self) -> None:
        """Stop batching; whatever still waits is answered 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(ServeError(503, "shutting_down", "the service is shutting down"))
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None

    @contextlib.asynccontextmanager
    async def incoming(self) -> AsyncIterator[Callable[[list[torch.Tensor]], Any]]:
        """Announce a request whose images are on their way; yields its ``submit``.

        While announced requests have not submitted, an idle batcher waits for them (bounded by ``max_wait_s``).
        """
        self._incoming += 1
        submitted = False

        async def submit(images: list[torch.Tensor]) -> list[Answer]:
            nonlocal submitted
            if not submitted:
                submitted = True
                self._incoming -= 1
            return await self.submit(images)

        try:
            yield submit
        finally:
            if not submitted:
                self._incoming -= 1
                self._arrived.set()  # an idle batcher waiting for this request can stop waiting

    async def submit(self, images: list[torch.Tensor]) -> list[Answer]:
        """Queue one request's images and wait for their answers; 503 with Retry-After if that takes too long."""
        if len(self._queue) + len(images) > self.max_queued:
            raise self._busy(f"{len(self._queue)} images are already waiting")
        loop = asyncio.get_running_loop()
        items = [_Queued(image, loop.create_future()) for image in images]
        self._queue.extend(items)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.gather(*(item.future for item in items)), self.timeout_s)
        except TimeoutError:
            raise self._busy(f"the request waited over {self.timeout_s:g} s for the model") from None

    def _busy(self, why: str) -> ServeError:
        backlog_batches = math.ceil(len(self._queue) / self.max_batch)
        retry = max(1, math.ceil(backlog_batches * self._last_batch_s))
        return ServeError(503, "overloaded", f"{why}; retry in {retry} s", {"Retry-After": str(retry)})

    async def _serve_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                images = torch.stack([item.image for item in batch])
                probabilities = await loop.run_in_executor(self.executor, self.run_batch, images)
            except Exception as exc:  # a model failure fails its batch (500), not the service
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finished = time.perf_counter()
            self._last_batch_s, self.batches_run = finished - started, self.batches_run + 1
            run = BatchRun(len(batch), started, finished)
            for item, row in zip(batch, probabilities, strict=True):
                if not item.future.done():  # its request may have timed out meanwhile
                    item.future.set_result(Answer(row, item.queued, run))

    async def _collect(self) -> list[_Queued]:
        """The next batch: what is queued now, plus what announced requests bring within ``max_wait_s``."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].queued + self.max_wait_s
        batch = self._take(self.max_batch)
        while len(batch) < self.max_batch and self._incoming > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
            batch += self._take(self.max_batch - len(batch))
        return batch

    def _take(self, count: int) -> list[_Queued]:
        """Up to ``count`` queued images whose requests still wait for them."""
        taken: list[_Queued] = []
        while self._queue and len(taken) < count:
            item = self._queue.popleft()
            if not item.future.done():
                taken.append(item)
        return taken
