"""The FastAPI app: ``/predict``, ``/explain``, health, metadata, the page at ``/`` and the Open Inference Protocol.

Every refusal is a JSON ``{"error", "code"}`` with a 4xx status; the service keeps serving after it.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from cnnkit.errors import CnnkitError
from cnnkit.serve.docs import add_docs_routes
from cnnkit.serve.limits import HeaderLimit, ServeError, error_response, malformed
from cnnkit.serve.model import ServedModel
from cnnkit.serve.service import ServeOptions, Service
from cnnkit.serve.v2 import v2_router

PAGE = "page.html"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One or more images as multipart file fields named 'file', or one image as the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["file"],
                }
            },
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "application/octet-stream": _BINARY,
        },
    }
}


class ErrorBody(BaseModel):
    error: str
    code: str


class Prediction(BaseModel):
    label: str
    index: int
    probability: float


class ImageResult(BaseModel):
    image: str
    predictions: list[Prediction]
    batch_size: int


class ModelRef(BaseModel):
    name: str
    version: str
    engine: str


class PredictResponse(BaseModel):
    model: ModelRef
    results: list[ImageResult]
    timing_ms: dict[str, float]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        413: "body, pixel count or number of images over the limit",
        415: "not an image, or not a supported format",
        422: "a missing or malformed field",
        503: "waited past the timeout; see Retry-After",
    }.items()
}


def install_error_handlers(app: FastAPI) -> None:
    """Give every error the same JSON shape, whichever layer raised it."""

    async def serve_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServeError)
        return error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(malformed(problems))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(ServeError(exc.status_code, "http", str(exc.detail), dict(exc.headers or {})))

    async def user_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(malformed(str(exc)))

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(CnnkitError, user_error)


def create_app(model: ServedModel, options: ServeOptions | None = None) -> FastAPI:
    """The whole service for one loaded model."""
    service = Service(model, options or ServeOptions())
    from cnnkit import __version__

    app = FastAPI(
        title=f"cnnkit serve: {model.name}",
        version=__version__,
        description=f"{model.engine} engine, {len(model.classes)} classes. The page at / classifies a dropped image.",
        lifespan=service.lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN; add_docs_routes serves Swagger UI itself
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(HeaderLimit, max_bytes=service.limits.max_header_bytes)
    install_error_handlers(app)
    add_docs_routes(app)
    add_health_routes(app, service)
    add_predict_route(app, service)
    if model.explainer is not None:
        add_explain_route(app, service)
    app.include_router(v2_router(service))
    return app


def add_health_routes(app: FastAPI, service: Service) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("cnnkit.serve").joinpath(PAGE).read_text(encoding="utf-8"))

    @app.get("/healthz", summary="Liveness: the process answers (pid: which worker, with --workers)")
    async def healthz() -> dict[str, str | int]:
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz", summary="Readiness: the model is loaded and warmed up", responses={503: {"model": ErrorBody}})
    async def readyz() -> JSONResponse:
        if service.ready:
            return JSONResponse({"status": "ready", "pid": os.getpid()})
        return error_response(ServeError(503, "warming_up", "the model is warming up", {"Retry-After": "1"}))

    @app.get("/metadata", summary="Classes, input size, preprocessing, limits and model-card facts")
    async def metadata() -> dict[str, Any]:
        return describe(service)


def describe(service: Service) -> dict[str, Any]:
    model, p = service.model, service.model.preprocessing
    return {
        "name": model.name,
        "version": model.version,
        "engine": model.engine,
        "classes": model.classes,
        "input_size": p.input_size,
        "channels": p.channels,
        "preprocessing": p.to_dict(),
        "explain": model.explainer is not None,
        "batching": {
            "max_batch": service.options.max_batch,
            "max_wait_ms": service.options.max_wait_ms,
            "model_batch": service.model_batch,
        },
        "limits": service.limits.to_dict(),
        "model_card": model.facts,
    }


def add_predict_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra=IMAGE_BODY,
        summary="Top-k labels for one or more images",
    )
    async def predict(
        request: Request, top_k: Annotated[int, Query(ge=1, le=100_000, description="Labels per image.")] = 5
    ) -> dict[str, Any]:
        images, answers, timing = await service.classify(lambda: service.request_images(request))
        model = service.model
        return {
            "model": {"name": model.name, "version": model.version, "engine": model.engine},
            "results": [
                {
                    "image": image.name,
                    "predictions": service.top(answer.probabilities, top_k),
                    "batch_size": answer.batch.size,
                }
                for image, answer in zip(images, answers, strict=True)
            ],
            "timing_ms": timing,
        }


def add_explain_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/explain",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the Grad-CAM overlay"}, **ERRORS},
        openapi_extra=IMAGE_BODY,
        summary="Grad-CAM overlay (PNG) of where the evidence for a class lies",
        description="The explained class, its probability and the layer are in the X-Cnnkit-* headers "
        "(the label percent-encoded).",
    )
    async def explain(
        request: Request,
        class_name: Annotated[
            str | None, Query(alias="class", description="Class to explain; default: the predicted one.")
        ] = None,
    ) -> Response:
        result = await service.explain(request, class_name)
        headers = {
            "X-Cnnkit-Label": quote(result["label"]),
            "X-Cnnkit-Index": str(result["index"]),
            "X-Cnnkit-Probability": f"{result['probability']:.6f}",
            "X-Cnnkit-Layer": quote(result["layer"]),
        }
        return Response(result["png"], media_type="image/png", headers=headers)
