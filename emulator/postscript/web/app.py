"""`create_app`: the Postscript emulator as a Starlette app.

Middleware, outermost first: journal -> auth -> rate limit -> faults -> routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.errors import (
    ApiProblem,
    InvalidInput,
    error_body,
    error_headers,
)
from postscript_audience_lab.emulator.postscript.openapi.document import openapi_document
from postscript_audience_lab.emulator.postscript.web import admin, api, inbox
from postscript_audience_lab.emulator.postscript.web import messaging as api_messaging
from postscript_audience_lab.emulator.postscript.web.auth import AuthMiddleware
from postscript_audience_lab.emulator.postscript.web.faults import FaultMiddleware
from postscript_audience_lab.emulator.postscript.web.journal import JournalMiddleware
from postscript_audience_lab.emulator.postscript.web.rate_limit import RateLimitMiddleware

__all__ = ["create_app"]


# The one operation whose 400 the reference shows with `{"ctx","log","msg","type"}` items.
_CONTEXT_ITEMS_PATHS = ("/api/v2/me",)


async def _api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    body = exc.body
    if isinstance(exc, InvalidInput) and request.url.path in _CONTEXT_ITEMS_PATHS:
        body = exc.as_context_items()
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = {**error_headers(exc.status_code), **(exc.headers or {})}
    return JSONResponse(error_body(exc.status_code), status_code=exc.status_code, headers=headers)


async def _openapi(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    return JSONResponse(openapi_document(strict=emulator.config.strict))


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    config = config or EmulatorConfig()
    emulator = Emulator.from_config(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        emulator.close()  # pending webhook deliveries end with the server

    app = Starlette(
        routes=[
            *api.routes,
            *api_messaging.routes,
            *admin.routes,
            *inbox.routes,
            Route("/openapi.json", _openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(JournalMiddleware, journal=emulator.journal),
            Middleware(AuthMiddleware, tenancy=lambda: emulator.tenancy),
            Middleware(RateLimitMiddleware, limiter=emulator.rate_limiter),
            Middleware(FaultMiddleware, faults=emulator.faults),
        ],
        exception_handlers={ApiProblem: _api_problem, HTTPException: _http_error},
    )
    app.state.emulator = emulator
    return app
