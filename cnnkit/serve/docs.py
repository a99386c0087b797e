"""OpenAPI docs at ``/docs`` that work offline: Swagger UI's files come from the installed ``swagger-ui-bundle``.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so on a machine without internet it
stays blank. Here the page and its script, stylesheet and icon are all served by the app itself.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
SCRIPT, STYLESHEET, ICON = "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"
ASSETS = {SCRIPT: "text/javascript", STYLESHEET: "text/css", ICON: "image/png"}


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` (Swagger UI on the app's ``/openapi.json``) and the three files it needs, from the app alone.

    The app must be created with ``docs_url=None`` and ``redoc_url=None`` (FastAPI's CDN-backed pages).
    """
    title = f"{app.title}: API"

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS_URL}/{SCRIPT}",
            swagger_css_url=f"{ASSETS_URL}/{STYLESHEET}",
            swagger_favicon_url=f"{ASSETS_URL}/{ICON}",
            # Swagger UI would otherwise send the spec to an online validator for its badge
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True},
        )

    @app.get(f"{ASSETS_URL}/{{name}}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no docs asset named {name!r}")
        path = swagger_ui_path / name
        return FileResponse(str(path), media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"})
