"""``cnnkit serve`` under load: EfficientNet-Lite0 (hymenoptera head) on ONNX Runtime, micro-batching on and off.

Two servers run side by side as subprocesses on 127.0.0.1, one with ``--max-batch 32`` and one
with ``--max-batch 1`` (micro-batching off), both from the same exported file and otherwise the
same code (one inference thread, ONNX Runtime's default intra-op threads, one decoding thread per
core). At concurrency 1, 8 and 32 an ``httpx`` async client sends a fixed number of requests, one
hymenoptera validation photo each as a multipart upload (encoded once beforehand, so that the
client, which shares the cores, spends as little as it can), in rounds that alternate between the
two servers so that a busy machine slows both alike. The baseline is ONNX Runtime called directly
in this process, right after each round, on batches of the sizes that round's server formed (each
answer names its batch's size) and split into forward passes as that server splits them
(``per_pass``: each server measures at start-up which size is fastest per image, see ``cnnkit serve
--model-batch``), with the photos decoded and prepared beforehand: the images/s a server could reach
if HTTP, decoding and resizing cost nothing.

Where the time goes: ``decode_ms``, ``queue_ms`` and ``infer_ms`` are the means of what the server
reports per request (``timing_ms``; ``infer_ms`` is the whole batch's run), ``srv_cpu_ms`` the server
process's CPU time per request and ``cli_cpu_ms`` the client's. Server peak RSS is VmHWM.

Usage: python -m benchmarks.serve [--run RUN] [--requests 240] [--rounds 4]  (COLUMNS=200 for the whole table)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

import cnnkit
from benchmarks._common import DATASETS, report
from cnnkit.serve.model import ServedModel, load_served_model, resolve_source

CONCURRENCY = (1, 8, 32)
MODES = {"on": 32, "off": 1}  # micro-batching: --max-batch
STARTUP_TIMEOUT_S = 300
Direct = tuple[ServedModel, torch.Tensor]  # the model, loaded here, and the photos decoded and prepared


@dataclass
class Load:
    """What one (mode, concurrency) saw: each request's latency, errors, batch sizes and the time it all took."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    stages: collections.defaultdict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    direct_images: int = 0
    direct_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000

    def per_request_ms(self, seconds: float) -> float:
        return round(seconds / max(1, len(self.latencies)) * 1000, 1)


Upload = tuple[bytes, dict[str, str]]  # a multipart body with one photo, and its Content-Type header


def uploads(photos: list[tuple[str, bytes]]) -> list[Upload]:
    """Each photo as the multipart body httpx would send, encoded once."""
    encoded = []
    for name, data in photos:
        request = httpx.Request("POST", "http://127.0.0.1/predict", files={"file": (name, data, "image/jpeg")})
        encoded.append((request.read(), {"content-type": request.headers["content-type"]}))
    return encoded


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(run: Path, max_batch: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """``cnnkit serve RUN`` in a subprocess, ready to answer; stopped (SIGINT, then SIGKILL) afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "cnnkit.cli.main", "serve", str(run), "--port", str(port)]
    command += ["--max-batch", str(max_batch)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"'{' '.join(command)}' did not become ready")
            time.sleep(0.5)
        yield url, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def peak_rss_mb(process: subprocess.Popen) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


async def send(url: str, photos: list[Upload], count: int, concurrency: int, load: Load) -> None:
    """``count`` requests, ``concurrency`` at a time, each one photo; adds what they saw to ``load``."""
    next_index = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for i in next_index:
                body, headers = photos[i % len(photos)]
                started = time.perf_counter()
                try:
                    response = await client.post("/predict?top_k=1", content=body, headers=headers)
                except httpx.HTTPError:
                    load.errors += 1
                    continue
                if response.status_code != 200:
                    load.errors += 1
                    continue
                load.latencies.append(time.perf_counter() - started)
                answer = response.json()
                load.batch_sizes.append(answer["results"][0]["batch_size"])
                for stage in ("decode_ms", "queue_ms", "inference_ms"):
                    load.stages[stage] += answer["timing_ms"][stage]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        load.seconds += time.perf_counter() - started


def replay_directly(run_batch: Callable, images: torch.Tensor, batch_sizes: list[int], load: Load) -> None:
    """Run ONNX Runtime directly on batches of the sizes a server formed, split into forward passes as that server
    splits them (``run_batch``); adds the images and time to ``load``."""
    per_size = collections.Counter(batch_sizes)
    batches = [size for size, answers in sorted(per_size.items()) for _ in range(max(1, round(answers / size)))]
    started, offset = time.perf_counter(), 0
    for size in batches:
        run_batch(torch.stack([images[(offset + i) % len(images)] for i in range(size)]))
        offset += size
    load.direct_seconds += time.perf_counter() - started
    load.direct_images += sum(batches)


def hymenoptera_run(folder: Path) -> Path:
    run = cnnkit.train(
        DATASETS / "hymenoptera",
        model="efficientnet_lite0",
        epochs=3,
        fine_tune_epochs=0,
        progress=False,
        out=folder,
    )
    return run.path


def send_measured(url: str, pid: int, photos: list[Upload], count: int, concurrency: int, load: Load) -> None:
    """:func:`send`, adding the server's and this process's CPU time to ``load``."""
    server_before, client_before = cpu_seconds(pid), time.process_time()
    asyncio.run(send(url, photos, count, concurrency, load))
    load.server_cpu += cpu_seconds(pid) - server_before
    load.client_cpu += time.process_time() - client_before


def measure(run: Path, photos: list[Upload], direct: Direct, requests: int, rounds: int) -> list[dict]:
    """Every (mode, concurrency) in rounds alternating between the servers; returns the table's rows."""
    model, images = direct
    model.run_batch(images[:32])  # warm-up of the direct baseline
    loads = {(mode, c): Load() for mode in MODES for c in CONCURRENCY}
    with contextlib.ExitStack() as stack:
        servers = {mode: stack.enter_context(server(run, max_batch)) for mode, max_batch in MODES.items()}
        model_batch = {
            mode: httpx.get(f"{url}/metadata").json()["batching"]["model_batch"] for mode, (url, _) in servers.items()
        }
        for url, _ in servers.values():  # warm-up: first connections, first decodes
            asyncio.run(send(url, photos, 32, 8, Load()))
        for concurrency in CONCURRENCY:
            for _ in range(rounds):
                for mode, (url, process) in servers.items():
                    load = loads[mode, concurrency]
                    seen = len(load.batch_sizes)
                    send_measured(url, process.pid, photos, requests // rounds, concurrency, load)
                    run_batch = functools.partial(model.probabilities, model_batch=model_batch[mode])
                    replay_directly(run_batch, images, load.batch_sizes[seen:], load)
        rss = {mode: peak_rss_mb(process) for mode, (_, process) in servers.items()}
    return [row(mode, c, loads[mode, c], rss[mode], model_batch[mode]) for mode in MODES for c in CONCURRENCY]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained Lite0 run folder; default: train one (3 head epochs)")
    parser.add_argument("--requests", type=int, default=240, help="requests per mode and concurrency")
    parser.add_argument("--rounds", type=int, default=4, help="alternations between the two servers")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in the servers (see cnnkit.serve.server.build_app); ONNX Runtime keeps its threads
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or hymenoptera_run(Path(tmp) / "hymenoptera-lite0")
        started = time.perf_counter()
        source = resolve_source(run, "onnx")  # what 'cnnkit serve RUN' does first: export when missing
        export_seconds = time.perf_counter() - started
        paths = sorted((DATASETS / "hymenoptera" / "val").glob("*/*.jpg"))
        photos = [(path.name, path.read_bytes()) for path in paths]
        model = load_served_model(source)
        images = torch.stack([model.prepare(model.decode(data)) for _, data in photos])
        rows = measure(run, uploads(photos), (model, images), args.requests, args.rounds)
    return 0 if report("serve", title(export_seconds, len(photos)), rows, targets(rows)) else 1


def row(mode: str, concurrency: int, load: Load, rss_mb: float, model_batch: int) -> dict:
    served, direct = len(load.latencies) / load.seconds, load.direct_images / load.direct_seconds
    return {
        "batching": mode,
        "conc": concurrency,
        "reqs": load.requests,
        "errors": load.errors,
        "p50_ms": round(load.percentile(50), 1),
        "p99_ms": round(load.percentile(99), 1),
        "req_s": round(served, 1),
        "batch": round(statistics.fmean(load.batch_sizes), 1),
        "per_pass": model_batch,
        "decode_ms": load.per_request_ms(load.stages["decode_ms"] / 1000),
        "queue_ms": load.per_request_ms(load.stages["queue_ms"] / 1000),
        "infer_ms": load.per_request_ms(load.stages["inference_ms"] / 1000),
        "srv_cpu_ms": load.per_request_ms(load.server_cpu),
        "cli_cpu_ms": load.per_request_ms(load.client_cpu),
        "ort_img_s": round(direct, 1),
        "vs_ort": round(served / direct, 2),
        "rss_mb": round(rss_mb),
    }


def title(export_seconds: float, photos: int) -> str:
    return (
        f"cnnkit serve: Lite0 224 px, ONNX Runtime fp32, {photos} photos, loopback, {os.cpu_count()} cores "
        f"shared with the client, load average {os.getloadavg()[0]:.1f} at the end; "
        f"first-serve export {export_seconds:.0f} s"
    )


def targets(rows: list[dict]) -> dict[str, bool]:
    at = {(r["batching"], r["conc"]): r for r in rows}
    batched, unbatched = at["on", 32], at["off", 32]
    alone, alone_unbatched = at["on", 1], at["off", 1]
    return {
        "0 errors": all(r["errors"] == 0 for r in rows),
        "concurrency 32: batching >= 2x the requests/s of no batching": batched["req_s"] >= 2 * unbatched["req_s"],
        "concurrency 32: batching >= 70% of direct ONNX Runtime images/s": batched["vs_ort"] >= 0.70,
        "concurrency 1: batching adds <= 10% to p50": alone["p50_ms"] <= 1.10 * alone_unbatched["p50_ms"],
    }


if __name__ == "__main__":
    sys.exit(main())
