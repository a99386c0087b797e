"""``cnnkit serve``: parity with ``cnnkit.predict``, the Open Inference Protocol through tritonclient, the page
in headless Chromium, micro-batching off the event loop, and every limit answered with a 4xx.

The session's ``plain_run`` is copied (so that serving it exports into a private ``export/`` folder) and
served through ONNX Runtime by one background uvicorn on 127.0.0.1 for the whole module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import cnnkit
from cnnkit.cli.main import app as cli_app
from cnnkit.serve import (
    Limits,
    ServedModel,
    ServeOptions,
    background_server,
    create_app,
    load_served_model,
    resolve_source,
)
from cnnkit.serve.model import ModelSource, file_version
from tests.conftest import sklearn_image
from tests.test_cli import run_main

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
PARITY_IMAGES = 50
FUZZ_REQUESTS = 300
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def run_dir(plain_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("serve") / "shapes-plain"
    shutil.copytree(plain_run.path, copy, ignore=shutil.ignore_patterns("export"))
    return copy


@pytest.fixture(scope="module")
def source(run_dir: Path) -> ModelSource:
    """The run on ONNX Runtime: exported on the fly (with export's parity check) into RUN/export."""
    return resolve_source(run_dir, "onnx")


@pytest.fixture(scope="module")
def served(source: ModelSource) -> ServedModel:
    return load_served_model(source)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server(served: ServedModel) -> Iterator[str]:
    with background_server(create_app(served, ServeOptions(max_batch=8, max_wait_ms=20))) as url:
        wait_ready(url)
        yield url


def encode(array: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """50 synthetic photos: noise with a bright rectangle, 24-160 px either way, PNG and JPEG."""
    folder = tmp_path_factory.mktemp("serve-images")
    rng = np.random.default_rng(16)
    paths = []
    for i in range(PARITY_IMAGES):
        height, width = rng.integers(24, 160, 2).tolist()
        array = rng.integers(0, 90, (height, width, 3)).astype(np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        array[top : top + height // 3, left : left + width // 3] = rng.integers(150, 256, 3)
        image_format = "PNG" if i % 2 else "JPEG"
        path = folder / f"photo{i:02d}.{image_format.lower()}"
        path.write_bytes(encode(array, image_format))
        paths.append(path)
    return paths


def probability_rows(results: list[dict], classes: int) -> np.ndarray:
    """``cnnkit predict``-style results with every class listed -> an (images, classes) matrix."""
    rows = np.zeros((len(results), classes))
    for row, result in zip(rows, results, strict=True):
        for prediction in result["predictions"]:
            row[prediction["index"]] = prediction["probability"]
    return rows


def v2_body(datas: list[bytes]) -> dict[str, Any]:
    encoded = [base64.b64encode(data).decode("ascii") for data in datas]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(datas)], "data": encoded}]}


def file_fields(paths: list[Path]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (path.name, path.read_bytes())) for path in paths]


def assert_same_predictions(got: list[dict], expected: list[dict], tolerance: float) -> None:
    """Same labels in the same order, probabilities within ``tolerance``."""
    assert len(got) == len(expected)
    for have, want in zip(got, expected, strict=True):
        assert [p["label"] for p in have["predictions"]] == [p["label"] for p in want["predictions"]]
        for p, q in zip(have["predictions"], want["predictions"], strict=True):
            assert abs(p["probability"] - q["probability"]) <= tolerance


# ---------------------------------------------------------------- parity with cnnkit.predict


def test_predict_and_v2_answer_what_cnnkit_predict_does_for_50_images(server, served, source, images) -> None:
    classes = len(served.classes)
    expected = cnnkit.predict(images, onnx=source.onnx, top_k=classes)

    async def send_everything() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            groups = [images[i : i + 5] for i in range(0, len(images), 5)]
            predict = [client.post(f"/predict?top_k={classes}", files=file_fields(group)) for group in groups]
            infer = [client.post(f"/v2/models/{served.name}/infer", json=v2_body([p.read_bytes()])) for p in images]
            return await asyncio.gather(*predict, *infer)

    responses = asyncio.run(send_everything())
    assert all(response.status_code == 200 for response in responses), [r.text for r in responses if r.is_error]
    predicted, inferred = responses[: len(images) // 5], responses[len(images) // 5 :]
    results = [result for response in predicted for result in response.json()["results"]]
    assert [result["image"] for result in results] == [path.name for path in images]
    assert_same_predictions(results, expected, 1e-5)
    v2_rows = np.array([response.json()["outputs"][0]["data"] for response in inferred])
    assert np.abs(v2_rows - probability_rows(expected, classes)).max() <= 1e-5
    labels = [response.json()["outputs"][1]["data"][0] for response in inferred]
    assert labels == [result["predictions"][0]["label"] for result in expected]
    assert max(result["batch_size"] for result in results) > 1, "concurrent requests never shared a batch"
    body = predicted[0].json()
    assert body["model"] == {"name": served.name, "version": served.version, "engine": "onnx"}
    assert {"read_ms", "decode_ms", "queue_ms", "inference_ms", "total_ms"} <= set(body["timing_ms"])


def test_torch_engine_answers_what_cnnkit_predict_does_for_the_run(run_dir: Path, images: list[Path]) -> None:
    model = load_served_model(resolve_source(run_dir, "torch"))
    expected = cnnkit.predict(images, run=run_dir, top_k=len(model.classes))
    with TestClient(create_app(model)) as client:
        responses = [client.post("/predict?top_k=3", files=file_fields(images[i : i + 16])) for i in range(0, 50, 16)]
    results = [result for response in responses for result in response.json()["results"]]
    # bf16 autocast (on CPUs that have it) rounds differently with the batch's composition; fp32 does not
    assert_same_predictions(results, expected, 1e-5 if model.facts["precision"] == "fp32" else 2e-2)
    assert model.engine == "torch" and model.version == file_version(run_dir / "model.safetensors")


def test_a_run_is_exported_once_and_an_onnx_file_serves_without_explain(source, run_dir, images) -> None:
    assert source.onnx == run_dir / "export" / "shapes-plain.onnx"
    assert source.onnx.with_name(source.onnx.name + ".card.json").is_file()
    written = source.onnx.stat().st_mtime_ns
    assert resolve_source(run_dir, "onnx").onnx == source.onnx and source.onnx.stat().st_mtime_ns == written
    model = load_served_model(resolve_source(source.onnx))
    expected = cnnkit.predict(images[:3], onnx=source.onnx, top_k=2)
    with TestClient(create_app(model)) as client:
        metadata = client.get("/metadata").json()
        assert metadata["explain"] is False and metadata["name"] == "shapes-plain"
        assert metadata["model_card"]["export"]["checks_passed"] is True
        assert client.post("/explain", content=images[0].read_bytes()).status_code == 404
        response = client.post("/predict?top_k=2", files=file_fields(images[:3]))
    assert_same_predictions(response.json()["results"], expected, 1e-5)


def test_an_int8_export_serves_probabilities_that_sum_to_1_and_agree_with_fp32(served, source, shapes_dir) -> None:
    int8 = cnnkit.export(source.run, "onnx", int8=True, check_images=8).path
    photos = sorted(shapes_dir.glob("*/*.png"))[::4]  # 18 images, 6 of each class
    classes = len(served.classes)
    with TestClient(create_app(load_served_model(resolve_source(int8)))) as client:
        assert client.get("/metadata").json()["model_card"]["export"]["int8"] is True
        responses = [client.post(f"/predict?top_k={classes}", files=file_fields(photos[i : i + 9])) for i in (0, 9)]
    results = [result for response in responses for result in response.json()["results"]]
    rows = probability_rows(results, classes)
    assert np.abs(rows.sum(1) - 1).max() <= 1e-5
    assert_same_predictions(results, cnnkit.predict(photos, onnx=int8, top_k=classes), 1e-5)
    fp32 = probability_rows(cnnkit.predict(photos, onnx=source.onnx, top_k=classes), classes)
    assert (rows.argmax(1) == fp32.argmax(1)).mean() >= 0.8  # 16 of 18: the tiny CNN has near-ties that int8 flips
    assert np.abs(rows - fp32).mean() < 0.1


def test_metadata_health_docs_and_explain(server: str, served: ServedModel, run_dir: Path) -> None:
    metadata = httpx.get(f"{server}/metadata").json()
    assert metadata["classes"] == served.classes and metadata["input_size"] == 48
    assert metadata["preprocessing"] == served.preprocessing.to_dict() and metadata["explain"] is True
    assert metadata["model_card"]["architecture"] == "plain_cnn" and "val_accuracy" in metadata["model_card"]["metrics"]
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok", "pid": os.getpid()}
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert httpx.get(f"{server}/docs").status_code == 200
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/v2/models/{name}/infer"} <= set(paths)
    photo = Path(sklearn_image("flower.jpg"))
    response = httpx.post(f"{server}/explain?class=stripes", files=file_fields([photo]), timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-cnnkit-label"] == "stripes"
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.size == Image.open(photo).size  # 640x427: under the 1024 px cap
    assert np.asarray(overlay).std() > 0


# ---------------------------------------------------------------- the Open Inference Protocol, by tritonclient


def test_tritonclient_infers_over_json_base64_and_binary_data(server, served, source, images) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    chosen = images[:4]
    expected = cnnkit.predict(chosen, onnx=source.onnx, top_k=len(served.classes))
    want = probability_rows(expected, len(served.classes))
    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(served.name)
        metadata = client.get_model_metadata(served.name)
        assert metadata["versions"] == [served.version] and metadata["inputs"][0]["datatype"] == "BYTES"
        as_json = triton.InferInput("image", [len(chosen)], "BYTES")
        encoded = np.array([base64.b64encode(path.read_bytes()) for path in chosen], dtype=object)
        as_json.set_data_from_numpy(encoded, binary_data=False)
        outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("probabilities", "label")]
        result = client.infer(served.name, [as_json], outputs=outputs)
        assert np.abs(result.as_numpy("probabilities") - want).max() <= 1e-5
        assert [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")] == [
            entry["predictions"][0]["label"] for entry in expected
        ]
        as_binary = triton.InferInput("image", [len(chosen)], "BYTES")
        as_binary.set_data_from_numpy(np.array([path.read_bytes() for path in chosen], dtype=object), binary_data=True)
        result = client.infer(served.name, [as_binary])  # no outputs named: all of them, as binary data
        assert np.abs(result.as_numpy("probabilities") - want).max() <= 1e-5
        with pytest.raises(InferenceServerException, match="not valid base64") as refused:
            garbage = triton.InferInput("image", [1], "BYTES")
            garbage.set_data_from_numpy(np.array([b"%%% not base64 %%%"], dtype=object), binary_data=False)
            client.infer(served.name, [garbage])
        assert refused.value.status() == "422"
    finally:
        client.close()


# ---------------------------------------------------------------- the page, in headless Chromium


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright; skips (saying why) where either is missing.

    One per test: Playwright's sync API keeps an event loop running until it stops, and the tests after
    it call ``asyncio.run``."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("headless Chromium not found: install Debian's 'chromium' package (or run .ci/install-chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def watched_page(browser: Any, problems: list[str], requested: list[str]) -> Any:
    """A new page that notes console errors, page errors and every URL it asks for."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    return page


def test_page_shows_labels_and_heatmap_for_an_uploaded_photo(server: str, served: ServedModel, browser) -> None:
    photo = sklearn_image("flower.jpg")
    answer = httpx.post(f"{server}/predict", files=file_fields([Path(photo)])).json()
    api_labels = [prediction["label"] for prediction in answer["results"][0]["predictions"]]
    problems: list[str] = []
    requested: list[str] = []
    page = watched_page(browser, problems, requested)
    page.goto(f"{server}/")
    page.wait_for_function("document.getElementById('model-name').textContent === 'shapes-plain'")
    page.set_input_files("#file", photo)
    page.wait_for_selector("#overlay-figure:not([hidden])", timeout=30_000)
    page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
    labels = page.locator("#labels li .name").all_text_contents()
    widths = page.eval_on_selector_all("#labels .fill", "bars => bars.map(b => b.getBoundingClientRect().width)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
    page.close()
    assert labels == api_labels and len(labels) == len(served.classes)
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert problems == []
    assert all(url.startswith((server, "blob:", "data:")) for url in requested), requested
    assert Image.open(ARTIFACTS / "serve-page.png").size[0] == 1100


def test_docs_render_offline_from_the_service_alone(server: str, browser) -> None:
    html = httpx.get(f"{server}/docs").text
    assert "http://" not in html and "https://" not in html  # no CDN: every asset is the app's own
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        response = httpx.get(f"{server}/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 500, asset
    assert httpx.get(f"{server}/docs/assets/index.html").status_code == 404
    assert httpx.get(f"{server}/redoc").status_code == 404  # FastAPI's ReDoc page would load from a CDN
    problems: list[str] = []
    requested: list[str] = []
    page = watched_page(browser, problems, requested)
    page.goto(f"{server}/docs")
    page.wait_for_selector("#operations-default-predict_predict_post", timeout=30_000)
    operations = page.locator(".opblock-summary-path").all_text_contents()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-docs.png"))
    page.close()
    assert {"/predict", "/explain", "/v2/models/{name}/infer"} <= {path.replace("\u200b", "") for path in operations}
    assert problems == []
    assert all(url.startswith((server, "data:")) for url in requested), requested


# ---------------------------------------------------------------- micro-batching, off the event loop


@dataclasses.dataclass
class HeldModel:
    """The served model, with each batch's size recorded and batches held back while ``hold`` is set."""

    served: ServedModel
    hold: threading.Event = dataclasses.field(default_factory=threading.Event)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    sizes: list[int] = dataclasses.field(default_factory=list)

    def run_batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.hold.is_set():
            self.sizes.append(len(images))
            assert self.release.wait(30)
        return self.served.run_batch(images)

    def model(self) -> ServedModel:
        return dataclasses.replace(self.served, run_batch=self.run_batch)

    def wait_for_batches(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.sizes) < count:
            assert time.monotonic() < deadline, f"only {len(self.sizes)} of {count} batches started"
            time.sleep(0.01)


async def post_while_held(url: str, paths: list[Path], held: HeldModel, queued: Callable[[], int]) -> list:
    """Send the first image and hold its batch; send the rest, release once they all queue; return the answers."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        first = asyncio.ensure_future(client.post("/predict?top_k=3", files=file_fields(paths[:1])))
        await asyncio.to_thread(held.wait_for_batches, 1)
        health = await client.get("/healthz")  # answers while the model thread is busy
        assert health.status_code == 200 and not first.done()
        rest = [asyncio.ensure_future(client.post("/predict?top_k=3", files=file_fields([p]))) for p in paths[1:]]
        deadline = time.monotonic() + 30
        while queued() < len(rest):
            assert time.monotonic() < deadline, f"only {queued()} of {len(rest)} images queued"
            await asyncio.sleep(0.01)
        held.release.set()
        return [await first, *await asyncio.gather(*rest)]


@pytest.mark.parametrize("max_batch", [8, 1])
def test_requests_queued_during_a_batch_share_the_next_one(served, source, images, max_batch: int) -> None:
    held = HeldModel(served)
    chosen = images[:8]
    expected = cnnkit.predict(chosen, onnx=source.onnx, top_k=3)
    app = create_app(held.model(), ServeOptions(max_batch=max_batch, max_wait_ms=200, model_batch=max_batch))
    with background_server(app) as url:
        wait_ready(url)
        held.hold.set()
        responses = asyncio.run(post_while_held(url, chosen, held, lambda: app.state.service.batcher.queued))
    assert_same_predictions([r.json()["results"][0] for r in responses], expected, 1e-5)
    assert held.sizes == ([1, 7] if max_batch == 8 else [1] * 8)


def test_a_lone_request_does_not_wait_for_company(served: ServedModel, images: list[Path]) -> None:
    with TestClient(create_app(served, ServeOptions(max_wait_ms=10_000))) as client:
        timing = client.post("/predict", files=file_fields(images[:1])).json()["timing_ms"]
    assert timing["queue_ms"] < 5_000


def test_waiting_past_the_timeout_is_503_with_retry_after(served: ServedModel, images: list[Path]) -> None:
    held = HeldModel(served)
    options = ServeOptions(limits=Limits(timeout_s=0.5))
    with TestClient(create_app(held.model(), options)) as client:
        wait = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < wait
        held.hold.set()
        response = client.post("/predict", files=file_fields(images[:1]))
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert response.json()["code"] == "overloaded"
        held.hold.clear()
        held.release.set()
        assert client.get("/healthz").status_code == 200
        assert client.post("/predict", files=file_fields(images[:1])).status_code == 200


# ---------------------------------------------------------------- bad requests: each a 4xx, then still serving


def png_claiming(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A PNG whose header says ``width`` x ``height``: with ``rows`` None, a lie over a tiny image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    stream = zlib.compress(rows if rows is not None else b"\0" * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A real decompression bomb: 8000 x 8000 black pixels (64 MP) in about 60 kB."""
    return png_claiming(8000, 8000, rows=bytes(8001 * 8000))  # each row: a filter byte, then its pixels


BadRequest = tuple[str, str, dict[str, Any], int]
WRONG_CONTENT_TYPES = ["text/plain", "application/json", "application/x-www-form-urlencoded", "video/mp4", "text/xml"]
NOT_BASE64 = ["%%%", "a", "@@@@", "abc$", "====", "aGk=aGk=!"]
WRONG_V2_DOCUMENTS: list[Any] = [
    {"inputs": []},
    {"inputs": [{"name": "x"}]},
    {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
    {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]},
    {"inputs": [{"name": "image", "datatype": "BYTES", "shape": "1", "data": ["aGk="]}]},
    [1, 2],
]
HI = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}  # base64 of b"hi": not an image
ODD_V2_PARAMETERS: list[Any] = [
    {"inputs": [{**HI, "parameters": "binary"}]},
    {"inputs": [{**HI, "data": [["aGk="]], "parameters": [1]}], "parameters": 7},
    {"inputs": [HI], "outputs": [{"name": "label", "parameters": "yes"}], "parameters": {"binary_data_output": 1}},
]


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "cnnkit-test-boundary") -> bytes:
    lines = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        lines.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(lines) + f"--{boundary}--\r\n".encode()


FORM = "multipart/form-data; boundary=cnnkit-test-boundary"
Makers = dict[str, Callable[[random.Random], BadRequest]]  # kind -> (rng -> method, path, httpx arguments, status)


def raw(content: bytes, content_type: str) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": content_type}}


def image_requests(photo: bytes, bomb: bytes) -> Makers:
    """Bodies that are not an image the service takes, or too much of one."""
    return {
        "wrong content type": lambda r: (
            "POST",
            "/predict",
            raw(photo, r.choice(WRONG_CONTENT_TYPES)),
            415,
        ),
        "not an image": lambda r: ("POST", "/predict", raw(r.randbytes(r.randint(1, 4000)), "image/jpeg"), 415),
        "cut image": lambda r: ("POST", "/predict", raw(photo[: r.randint(200, len(photo) - 200)], "image/jpeg"), 415),
        "unsupported format": lambda r: (
            "POST",
            "/predict",
            raw(
                encode(np.zeros((8, 8, 3), np.uint8), r.choice(["PPM", "ICO", "TGA", "PCX"])),
                "application/octet-stream",
            ),
            415,
        ),
        "empty body": lambda r: (
            "POST",
            r.choice(["/predict", "/explain"]),
            raw(b"", r.choice(["image/png", ""])),
            422,
        ),
        "huge headers": lambda r: ("GET", "/healthz", {"headers": {"x-filler": "x" * r.randint(40_000, 60_000)}}, 431),
        "pixel budget": lambda r: (
            "POST",
            r.choice(["/predict", "/explain"]),
            raw(png_claiming(r.randint(7000, 9000), 6000), "image/png"),
            413,
        ),
        "explain pixel budget": lambda r: ("POST", "/explain", raw(png_claiming(5000, 4000), "image/png"), 413),
        "decompression bomb": lambda r: (
            "POST",
            "/predict",
            raw(r.choice([bomb, png_claiming(10**5, 10**5)]), "image/png"),
            413,
        ),
        "body over the limit": lambda r: ("POST", "/predict", raw(b"\0" * 10_000_001, "image/png"), 413),
    }


def form_requests(photo: bytes) -> Makers:
    """Broken forms and query strings, and routes used the wrong way."""
    return {
        "truncated multipart": lambda r: (
            "POST",
            "/predict",
            raw(multipart([("file", "a.jpg", photo)])[: r.randint(10, len(photo))], FORM),
            422,
        ),
        "multipart without boundary": lambda r: ("POST", "/predict", raw(photo, "multipart/form-data"), 422),
        "form without an image": lambda r: ("POST", "/predict", raw(multipart([("note", None, b"hi")]), FORM), 422),
        "too many images": lambda r: (
            "POST",
            "/predict",
            raw(multipart([("file", f"{i}.jpg", photo) for i in range(r.randint(17, 30))]), FORM),
            413,
        ),
        "bad top_k": lambda r: (
            "POST",
            f"/predict?top_k={r.choice(['0', '-3', 'abc', '1.5'])}",
            raw(photo, "image/jpeg"),
            422,
        ),
        "unknown class": lambda r: ("POST", "/explain?class=unicorn", raw(photo, "image/jpeg"), 422),
        "wrong method": lambda r: (r.choice(["GET", "PUT", "DELETE"]), "/predict", {}, 405),
    }


def v2_requests(model: str, photo: bytes) -> Makers:
    """Open Inference Protocol requests that break it."""
    infer = f"/v2/models/{model}/infer"
    return {
        "empty v2 body": lambda r: ("POST", infer, raw(b"", "application/json"), 422),
        "base64 garbage in v2": lambda r: (
            "POST",
            infer,
            {"json": {"inputs": [{**v2_body([b""])["inputs"][0], "data": [r.choice(NOT_BASE64)]}]}},
            422,
        ),
        "odd v2 parameters": lambda r: ("POST", infer, {"json": r.choice(ODD_V2_PARAMETERS)}, 415),
        "not JSON in v2": lambda r: ("POST", infer, raw(r.randbytes(r.randint(1, 300)), "application/json"), 422),
        "wrong v2 tensor": lambda r: (
            "POST",
            infer,
            {"json": r.choice([*WRONG_V2_DOCUMENTS, {**v2_body([photo]), "outputs": [{"name": "logits"}]}])},
            422,
        ),
        "bad binary header": lambda r: (
            "POST",
            infer,
            {"content": b"{}", "headers": {"inference-header-content-length": r.choice(["99", "x", "-1"])}},
            422,
        ),
        "unknown model": lambda r: ("POST", "/v2/models/nobody/infer", {"json": v2_body([photo])}, 404),
    }


@pytest.fixture(scope="module")
def makers(served: ServedModel, bomb: bytes) -> dict[str, Callable[[random.Random], BadRequest]]:
    photo = Path(sklearn_image("china.jpg")).read_bytes()
    return {**image_requests(photo, bomb), **form_requests(photo), **v2_requests(served.name, photo)}


def send_bad(client: httpx.Client | TestClient, request: BadRequest) -> httpx.Response:
    method, path, arguments, _ = request
    return client.request(method, path, **arguments)


def test_each_kind_of_bad_request_gets_its_4xx_and_a_json_error(served, makers) -> None:
    with TestClient(create_app(served)) as client:
        for kind, make in makers.items():
            request = make(random.Random(kind))
            response = send_bad(client, request)
            assert response.status_code == request[3], f"{kind}: {response.status_code} {response.text[:300]}"
            body = response.json()
            assert isinstance(body["error"], str) and body["error"] and body["code"], kind
            assert client.get("/healthz").status_code == 200


def test_300_seeded_bad_requests_get_only_4xx_and_the_service_keeps_answering(server, makers) -> None:
    rng = random.Random(300)
    kinds = sorted(makers)
    statuses: dict[str, set[int]] = {}
    with httpx.Client(base_url=server, timeout=30) as client:
        for _ in range(FUZZ_REQUESTS):
            kind = rng.choice(kinds)
            request = makers[kind](rng)
            status = send_bad(client, request).status_code
            statuses.setdefault(kind, set()).add(status)
            assert status == request[3], f"{kind}: {status}"
            assert client.get("/healthz").status_code == 200
        assert len(statuses) == len(kinds)  # every kind was drawn
        assert client.post("/predict", content=Path(sklearn_image("china.jpg")).read_bytes()).status_code == 200


# ---------------------------------------------------------------- the command line


def test_serve_help_documents_the_options() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    options = ("--host", "--port", "--workers", "--max-batch", "--max-wait-ms", "--model-batch", "--engine")
    for option in (*options, "/predict", "/v2"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/run"], "run folder /no/such/run does not exist"),
        (["/no/such/model.onnx"], "ONNX model /no/such/model.onnx does not exist"),
        (["{onnx}", "--engine", "torch"], "--engine torch needs a run folder"),
        (["{run}", "--max-batch", "0"], "--max-batch must be positive"),
        (["{run}", "--port", "70000"], "--port must be between 0 and 65535"),
    ],
)
def test_bad_serve_arguments_are_one_line_and_status_2(monkeypatch, capsys, source, args, message) -> None:
    args = [arg.format(onnx=source.onnx, run=source.run) for arg in args]
    code, _, err = run_main(monkeypatch, capsys, "serve", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answering_pids(url: str, path: str, deadline: float) -> set[int]:
    """The worker pids that answer ``path`` with 200 on fresh connections, until two are seen or ``deadline``."""
    pids: set[int] = set()
    while len(pids) < 2 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            response = httpx.get(f"{url}{path}", timeout=5)  # a new connection each time
            if response.status_code == 200:
                pids.add(response.json()["pid"])
        time.sleep(0.02)
    return pids


def test_two_workers_both_answer_and_are_ready(source: ModelSource, images: list[Path], tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    command = [sys.executable, "-m", "cnnkit.cli.main", "serve", str(source.onnx), "--port", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen([*command, "--workers", "2"], stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = answering_pids(
            url, "/readyz", time.monotonic() + 180
        )  # start-up: seconds, or minutes on a busy machine
        assert len(ready) == 2 and process.pid not in ready, ready
        expected = cnnkit.predict(images[:4], onnx=source.onnx, top_k=2)
        response = httpx.post(f"{url}/predict?top_k=2", files=file_fields(images[:4]), timeout=30)
        assert_same_predictions(response.json()["results"], expected, 1e-5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-2000:]


def test_options_reach_worker_processes_intact() -> None:
    from cnnkit.serve.server import options_from_dict, options_to_dict

    options = ServeOptions(max_batch=4, max_wait_ms=1.5, limits=Limits(max_images=3, timeout_s=2.0), model_batch=2)
    assert options_from_dict(json.loads(json.dumps(options_to_dict(options)))) == options
    source = ModelSource("onnx", onnx=Path("m.onnx"), run=Path("runs/x"))
    assert ModelSource.from_dict(json.loads(json.dumps(source.to_dict()))) == source
