"""Progress on stderr for any long step: a live bar on a terminal, plain lines in a log.

When stderr is not a terminal (a log file, a pipe), a long step prints ``step: done/total, rate,
ETA`` every ``CNNKIT_PROGRESS_INTERVAL`` seconds (default 5) instead of staying silent. It sits
below every package, so decoding (:mod:`cnnkit.data`) and training show progress the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

from cnnkit.errors import CnnkitError

INTERVAL_VARIABLE = "CNNKIT_PROGRESS_INTERVAL"
Item = TypeVar("Item")


def report_interval() -> float:
    """Seconds between two plain progress lines."""
    value = os.environ.get(INTERVAL_VARIABLE, "5")
    try:
        return max(0.0, float(value))
    except ValueError:
        raise CnnkitError(f"{INTERVAL_VARIABLE} must be a number of seconds, not {value!r}") from None


def progress_console() -> Console:
    return Console(stderr=True, highlight=False)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class PlainProgress:
    """``step: done/total unit, rate unit/s, ETA m:ss`` on a line of its own, at most every ``interval`` s."""

    def __init__(self, step: str, total: int, unit: str, console: Console, interval: float | None = None) -> None:
        self.step, self.total, self.unit, self.console = step, total, unit, console
        self.interval = report_interval() if interval is None else interval
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.console.print(self.line(done, now), soft_wrap=True)

    def line(self, done: int, now: float) -> str:
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        return f"{self.step}: {done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {clock(eta)}"


def tracked(items: Iterable[Item], total: int, step: str, unit: str = "batches") -> Iterator[Item]:
    """``items``, showing progress on stderr: a bar on a terminal, else a plain line now and then."""
    console = progress_console()
    if console.is_terminal:
        from rich.progress import track

        yield from track(items, total=total, description=step, console=console, transient=True)
        return
    ticker = PlainProgress(step, total, unit, console)
    for done, item in enumerate(items, 1):
        yield item
        ticker.update(done)
