"""The FastAPI application: a thin shell over the command services and the relational views."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.auth import KeyVerifier
from api.context import ApiContext
from api.deps import AuthBeforeUpload
from api.freshness import ViewWaiter
from api.guard import BrowserGuard
from api.idempotency import ResponseStore
from api.parts import ApiParts, Runtime
from api.reads import ReadModel
from api.routes import (
    confirmations,
    documents,
    edge_requests,
    edges,
    effects,
    events,
    goals,
    jobs,
    keys,
    ops,
    search,
)
from api.settings import ApiSettings, auth_required
from api.telemetry import RequestSpans, auth_denials, meter_provider, tracer_provider
from domain.api_key import Role

log = logging.getLogger(__name__)

DESCRIPTION = """Drive Janus over HTTP: goals, confirmations of hazardous actions, effects, jobs,
documents, the audit trail and the event log.

* Authenticate with `Authorization: Bearer <API key>`; roles are viewer < operator < approver <
  admin, each allowed what the ones before it are.
* Writes answer with a log `position`; pass it to a read as `?min_position=` to read your write.
* Every POST and DELETE takes an `Idempotency-Key` header: a retry returns the first response.
* Errors are `application/problem+json` (RFC 9457) with a stable `type`.
"""


class BodyLimit:
    """Refuses request bodies over the limit with a 413 problem, declared length or not.

    ``uploads``: paths that take files, with their own (larger) limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = problems.problem_response(
                Request(scope), 413, "content-too-large", self._detail(limit)
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, self._detail(limit))
            return message

        await self.app(scope, counted, send)

    def _detail(self, limit: int) -> str:
        return f"the request body is larger than {limit} bytes"


def create_app(
    parts: ApiParts,
    settings: ApiSettings | None = None,
    *,
    auth: bool | None = None,
    runtime: Runtime | None = None,
    own_runtime: bool = False,
    drive_views: bool | None = None,
    traces: TracerProvider | None = None,
    metrics: MeterProvider | None = None,
) -> FastAPI:
    """Build the API over a node's parts (``bootstrap.api.api_parts`` builds them from a Janus).

    ``runtime``: the in-process runtime, if any; with ``own_runtime`` the app starts it
    (in the background, so the API serves while views catch up) and stops it on shutdown.
    ``drive_views``: let a read waiting on ?min_position apply view batches itself (default:
    when the views are run in this process).
    """
    settings = settings or ApiSettings()
    required = auth_required(settings, parts.node.embedded) if auth is None else auth
    traces = traces or tracer_provider(settings.trace_exporter, parts.node.node_id)
    metrics = metrics or meter_provider(settings.trace_exporter)
    responses = ResponseStore(
        parts.responses_engine, timedelta(hours=settings.idempotency_retention_hours)
    )
    responses.setup()
    context = ApiContext(
        parts=parts,
        settings=settings,
        auth_required=required,
        verifier=KeyVerifier(parts.keys, settings.key_cache_seconds),
        reads=ReadModel(parts.views_engine, parts.clock),
        waiter=ViewWaiter(
            parts.relational,
            parts.reader,
            settings.read_wait_seconds,
            drive=runtime is not None if drive_views is None else drive_views,
        ),
        responses=responses,
        denials=auth_denials(metrics.get_meter("janus.api")),
        runtime=runtime,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_runtime and runtime is not None:
            threading.Thread(target=runtime.start, name="runtime-start", daemon=True).start()
        try:
            yield
        finally:
            if own_runtime and runtime is not None:
                runtime.stop()
            context.workers.shutdown()
            parts.release()

    app = FastAPI(
        title="Janus",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: the default loads them from a CDN
        redoc_url=None,
        # Spans and request metrics come from RequestSpans, which costs far less per request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.janus_api = context
    app.add_middleware(AuthBeforeUpload, uploads={documents.router.prefix: Role.OPERATOR})
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        uploads=documents.upload_limits(parts.node.ingest_max_bytes),
    )
    app.add_middleware(
        BrowserGuard, allowed_hosts=settings.host_names(), allowed_origins=settings.origins()
    )
    app.add_middleware(
        RequestSpans, tracer=traces.get_tracer("janus.api"), meter=metrics.get_meter("janus.api")
    )
    problems.install(app)
    for module in (
        goals,
        confirmations,
        effects,
        jobs,
        events,
        keys,
        ops,
        documents,
        edges,
        edge_requests,
        search,
    ):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = problems.problem_media_types(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _docs(app)
    return app


# Swagger UI's files as a maintained package ships them, so /docs works with no internet.
SWAGGER_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def _docs(app: FastAPI) -> None:
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs", status_code=307)
