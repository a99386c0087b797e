"""The Open Inference Protocol (KServe v2) over REST, so that standard clients (tritonclient, KServe) can call cnnkit.

The model takes one input, ``image``: a BYTES tensor of shape [N] whose elements are encoded
image files (base64 strings in JSON, raw bytes with the binary tensor data extension). It
returns ``probabilities`` (FP32 [N, classes], ``cnnkit predict``'s numbers) and ``label``
(BYTES [N], the top-1 class). Outputs come back as JSON, or as binary data when the request
asks for it (``binary_data_output``, or ``binary_data`` on a requested output).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cnnkit.serve.batcher import Answer
from cnnkit.serve.limits import Limits, ServeError, malformed, read_body, too_large
from cnnkit.serve.service import NamedImage, Service

INPUT_NAME = "image"
OUTPUTS = ("probabilities", "label")
HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")


@dataclass
class InferRequest:
    """What an inference request asks for: its id, its images and which outputs to return how."""

    id: str | None
    images: list[NamedImage]
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))
    binary: set[str] = field(default_factory=set)


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a body that may use the binary tensor data extension."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise malformed(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
    return body[: int(header_length)], body[int(header_length) :]


def parse_document(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed(f"the inference request is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise malformed("the inference request must be a JSON object with 'inputs'")
    return document


def image_tensor(document: dict[str, Any]) -> dict[str, Any]:
    """The request's single ``image`` input, checked: BYTES, shape [N] or [N, 1]."""
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise malformed(f"'inputs' must hold exactly one tensor, named {INPUT_NAME!r} (BYTES: encoded image files)")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME or tensor.get("datatype") != "BYTES":
        raise malformed(f"the input must be named {INPUT_NAME!r} with datatype BYTES, not {tensor.get('name')!r}")
    shape = tensor.get("shape")
    dimensions_ok = isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
    if not (dimensions_ok and shape and shape[1:] in ([], [1])):
        raise malformed(f"the shape of {INPUT_NAME!r} must be [N] or [N, 1], not {shape!r}")
    return tensor


def flatten(data: Any) -> list[Any]:
    """A JSON tensor's data in row-major order, whether nested or flat."""
    if isinstance(data, list):
        return [value for item in data for value in flatten(item)]
    return [data]


def json_elements(tensor: dict[str, Any]) -> list[bytes]:
    """Base64 strings from the JSON ``data`` -> the encoded images."""
    elements = []
    for i, value in enumerate(flatten(tensor.get("data"))):
        if not isinstance(value, str):
            raise malformed(f"{INPUT_NAME}[{i}] must be a base64 string of an image file")
        try:
            elements.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise malformed(f"{INPUT_NAME}[{i}] is not valid base64 ({exc})") from exc
    return elements


def binary_elements(data: bytes) -> list[bytes]:
    """A binary BYTES tensor (each element a little-endian uint32 length, then its bytes) -> its elements."""
    elements, offset = [], 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise malformed(f"the binary data of {INPUT_NAME!r} ends inside an element's length")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise malformed(f"the binary data of {INPUT_NAME!r} ends inside an element")
        elements.append(data[offset : offset + length])
        offset += length
    return elements


def tensor_elements(tensor: dict[str, Any], binary: bytes) -> list[bytes]:
    size = parameters_of(tensor).get("binary_data_size")
    if size is None:
        if binary:
            raise malformed(f"binary data came but {INPUT_NAME!r} has no binary_data_size parameter")
        return json_elements(tensor)
    if type(size) is not int or size != len(binary):
        raise malformed(f"binary_data_size {size!r} of {INPUT_NAME!r} does not match the {len(binary)} bytes sent")
    return binary_elements(binary)


def parameters_of(tensor_or_request: dict[str, Any]) -> dict[str, Any]:
    """The ``parameters`` object of a request or tensor; absent, or not an object, counts as none."""
    parameters = tensor_or_request.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


def requested_outputs(document: dict[str, Any]) -> tuple[list[str], set[str]]:
    """The outputs to return (default: all) and which of them go back as binary data."""
    parameters = parameters_of(document)
    requested = document.get("outputs")
    if requested is None:
        names = list(OUTPUTS)
        return names, set(names) if parameters.get("binary_data_output") is True else set()
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise malformed("'outputs' must be a list of objects with a 'name'")
    names = [o.get("name") for o in requested]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise malformed(f"unknown output(s) {unknown}; this model has {', '.join(OUTPUTS)}")
    binary = {o["name"] for o in requested if parameters_of(o).get("binary_data") is True}
    return names, binary | (set(names) if parameters.get("binary_data_output") is True else set())


async def read_infer_request(request: Request, service: Service) -> InferRequest:
    """Read the body, then parse it (JSON, base64) on a worker thread, away from the event loop."""
    body = await read_body(request, service.limits.max_body_bytes)
    return await service.off_loop(parse_infer_request, body, request.headers.get(HEADER_LENGTH), service.limits)


def parse_infer_request(body: bytes, header_length: str | None, limits: Limits) -> InferRequest:
    header, binary = split_binary(body, header_length)
    document = parse_document(header)
    tensor = image_tensor(document)
    count = math.prod(tensor["shape"])
    if count > limits.max_images:
        raise too_large(f"{count} images in one request; the limit is {limits.max_images}")
    elements = tensor_elements(tensor, binary)
    if len(elements) != count or count == 0:
        raise malformed(f"{INPUT_NAME!r} has shape {tensor['shape']} but {len(elements)} element(s)")
    images = [NamedImage(f"{INPUT_NAME}[{i}]", data) for i, data in enumerate(elements)]
    outputs, binary_outputs = requested_outputs(document)
    request_id = document.get("id")
    return InferRequest(None if request_id is None else str(request_id), images, outputs, binary_outputs)


def output_tensor(name: str, values: torch.Tensor | list[str], binary: bool) -> tuple[dict[str, Any], bytes]:
    """One output's JSON description and, if binary, its bytes."""
    if isinstance(values, torch.Tensor):
        described: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(values.shape)}
        raw = values.numpy().astype("<f4").tobytes() if binary else b""
        data: list[Any] = values.flatten().tolist()
    else:
        described = {"name": name, "datatype": "BYTES", "shape": [len(values)]}
        encoded = [value.encode("utf-8") for value in values]
        raw = b"".join(_LENGTH.pack(len(item)) + item for item in encoded) if binary else b""
        data = values
    if binary:
        described["parameters"] = {"binary_data_size": len(raw)}
    else:
        described["data"] = data
    return described, raw


def infer_response(service: Service, parsed: InferRequest, answers: list[Answer], timing: dict) -> Response:
    """The inference response: JSON, or JSON plus binary tensor data when the request asked for it."""
    model = service.model
    probabilities = torch.stack([answer.probabilities for answer in answers])
    sizes = [answer.batch.size for answer in answers]
    values: dict[str, torch.Tensor | list[str]] = {
        "probabilities": probabilities,
        "label": [model.classes[int(i)] for i in probabilities.argmax(1)],
    }
    tensors = [output_tensor(name, values[name], name in parsed.binary) for name in parsed.outputs]
    document: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [described for described, _ in tensors],
        "parameters": {**timing, "batch_size": max(sizes)},
    }
    if parsed.id is not None:
        document["id"] = parsed.id
    if not parsed.binary:
        return JSONResponse(document)
    header = json.dumps(document).encode("utf-8")
    return Response(
        header + b"".join(raw for _, raw in tensors),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def model_metadata(service: Service) -> dict[str, Any]:
    model = service.model
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": {"onnx": "onnxruntime_onnx", "torch": "pytorch"}[model.engine],
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.classes)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def v2_router(service: Service) -> APIRouter:
    """The v2 health, metadata and inference routes for the service's one model."""
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe v2)"])
    model = service.model

    def check_model(name: str, version: str | None = None) -> None:
        if name != model.name or version not in (None, model.version):
            wanted = name if version is None else f"{name} version {version}"
            served = f"{model.name} version {model.version}"
            raise ServeError(404, "unknown_model", f"no model {wanted}; this server has {served}")

    def readiness() -> JSONResponse:
        return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 400)

    @router.get("", summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        from cnnkit import __version__

        return {"name": "cnnkit", "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/health/live", summary="Server live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", summary="Server ready (200), or still warming up (400)")
    async def ready() -> JSONResponse:
        return readiness()

    @router.get("/models/{name}", summary="Model metadata")
    @router.get("/models/{name}/versions/{version}", summary="Model metadata (one version)")
    async def metadata(name: str, version: str | None = None) -> dict[str, Any]:
        check_model(name, version)
        return model_metadata(service)

    @router.get("/models/{name}/ready", summary="Model ready")
    @router.get("/models/{name}/versions/{version}/ready", summary="Model ready (one version)")
    async def model_ready(name: str, version: str | None = None) -> JSONResponse:
        check_model(name, version)
        return readiness()

    @router.post("/models/{name}/infer", summary="Inference: BYTES 'image' in, FP32 'probabilities' out")
    @router.post("/models/{name}/versions/{version}/infer", summary="Inference (one version)")
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        check_model(name, version)
        parsed: list[InferRequest] = []

        async def read() -> list[NamedImage]:
            parsed.append(await read_infer_request(request, service))
            return parsed[0].images

        _, answers, timing = await service.classify(read)
        return infer_response(service, parsed[0], answers, timing)

    return router
