"""Named moments at which a test can kill the process, to prove that a run survives any crash.

``CNNKIT_CRASH_AT=NAME:N`` makes the N-th arrival at :func:`crash_point` ``NAME`` send SIGKILL to
the current process, exactly as ``kill -9`` would at that moment. Unset, a crash point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_arrivals: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = os.environ.get("CNNKIT_CRASH_AT")
    if not target:
        return
    _arrivals[name] = _arrivals.get(name, 0) + 1
    wanted, _, count = target.partition(":")
    if wanted == name and str(_arrivals[name]) == (count or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
