"""Errors as RFC 9457 problem details: a stable type, a human detail, field paths when invalid.

Each exception a caller can cause maps to one status here. Anything else is a bug: it is logged
with an id and answered with a 500 that says nothing about the internals.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import InterfaceError, InternalError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import InternalError as SqlInternalError
from sqlalchemy.exc import OperationalError as SqlOperationalError
from starlette.exceptions import HTTPException

from adapters.blobs import BlobStoreError
from commands.errors import (
    CommandError,
    ConcurrencyConflict,
    IdempotencyConflict,
    NotFound,
    StoreUnavailable,
)
from commands.ingest import DocumentTooLarge, IngestRefused, UnsupportedMediaType
from domain.errors import (
    AlreadyDecided,
    ConfirmationExpired,
    DomainError,
    InvalidTransition,
    InvalidValue,
    Overfill,
)
from event_store.faults import cause_of
from projections.runner import ProjectionStalled

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:janus:problem:"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the value is: body, query, path, header...")
    message: str
    type: str


class Problem(BaseModel):
    type: str = Field(description="Stable identifier of the problem, urn:janus:problem:<code>.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="For invalid requests: every field that was refused."
    )


class ApiProblem(Exception):
    """An error the API itself raises (authentication, freshness, paging)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def invalid_field(loc: Sequence[str | int], message: str) -> ApiProblem:
    return ApiProblem(
        422,
        "validation-error",
        f"{'.'.join(str(p) for p in loc)}: {message}",
        errors=[FieldError(loc=list(loc), message=message, type="value_error")],
    )


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    504: "Gateway timeout",
}

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "content-too-large",
    415: "unsupported-media-type",
}

# Most specific first: isinstance decides, so subclasses must precede their bases.
_DOMAIN: list[tuple[type[Exception], int]] = [
    (NotFound, 404),
    (IdempotencyConflict, 409),
    (ConcurrencyConflict, 409),
    (StoreUnavailable, 503),
    (DocumentTooLarge, 413),
    (UnsupportedMediaType, 415),
    (IngestRefused, 422),
    (AlreadyDecided, 409),
    (ConfirmationExpired, 410),
    (Overfill, 409),
    (InvalidTransition, 409),
    (InvalidValue, 422),
    (DomainError, 422),
    (CommandError, 409),
]


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_PREFIX + code,
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _field_errors(errors: Sequence[Any]) -> list[FieldError]:
    # Never echo the input back: it may be large, and it may be something the caller should
    # not have sent (a secret pasted into the wrong field).
    return [
        FieldError(
            loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            message=str(e.get("msg", "invalid")),
            type=str(e.get("type", "value_error")),
        )
        for e in errors
    ]


def _summary(errors: list[FieldError]) -> str:
    parts = [f"{'.'.join(str(p) for p in e.loc) or 'request'}: {e.message}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc.errors())
    return problem_response(request, 422, "validation-error", _summary(errors), errors=errors)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    errors = _field_errors(exc.errors(include_input=False))
    return problem_response(request, 422, "validation-error", _summary(errors), errors=errors)


async def _on_api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        request, exc.status, exc.code, exc.detail, headers=exc.headers, errors=exc.errors
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http-{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(request, exc.status_code, code, detail, headers=headers)


def error_id(text: str) -> str:
    """A short id for an error's details: the same details always give the same id, so what a
    viewer is shown can be matched with the log line and the CLI's full text."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _store_detail(request: Request, exc: BaseException) -> str:
    """The cause in a few words (lock timeout, connection refused, read-only database...), never
    the driver's text, which can hold SQL and schema names; the log line has all of it."""
    cause = cause_of(exc) or "unavailable"
    ident = error_id(str(exc))
    log.error(
        "store error %s on %s %s (%s): %s", ident, request.method, request.url.path, cause, exc
    )
    return f"the event store or the views are unavailable ({cause}, error id {ident}); retry later"


def _domain_detail(request: Request, exc: Exception) -> str:
    if isinstance(exc, IdempotencyConflict):
        # The command layer's message names the scoped key; the caller knows their own key.
        return "this Idempotency-Key was already used for a different request"
    if isinstance(exc, StoreUnavailable):
        return _store_detail(request, exc)
    return str(exc)


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    for kind, status in _DOMAIN:
        if isinstance(exc, kind):
            code = getattr(exc, "code", "conflict")
            headers = {"Retry-After": "1"} if status == 503 else None
            detail = _domain_detail(request, exc)
            return problem_response(request, status, code, detail, headers=headers)
    raise exc


async def _on_store_down(request: Request, exc: Exception) -> JSONResponse:
    detail = _store_detail(request, exc)
    return problem_response(request, 503, "store-unavailable", detail, headers={"Retry-After": "1"})


async def _on_internal_db(request: Request, exc: Exception) -> JSONResponse:
    """A database refusal that is the database's state, not a bug: a read-only database (a
    standby, or writes switched off) is a 503 like an outage. Anything else is a bug."""
    if cause_of(exc) is not None:
        return await _on_store_down(request, exc)
    return await _on_bug(request, exc)


_STALLED = re.compile(r"^(?P<view>\S+) stalled at (?P<position>\S+?):")


def stalled_summary(message: str) -> str:
    """What a viewer may see of a stalled view: which, where, and the id of the details."""
    found = _STALLED.match(message)
    if found is None:
        return f"stalled (error id {error_id(message)}; details: janus projections status)"
    # The id of the stored error alone, so it matches what /v1/projections shows a viewer.
    ident = error_id(message[found.end() :].strip())
    where = f"{found['view']} is stalled at position {found['position']}"
    return f"{where} (error id {ident}; details: janus projections status)"


async def _on_blob_store(request: Request, exc: Exception) -> JSONResponse:
    """The blob store refused (bad credentials, an unusable bucket, a blob missing): the bytes
    cannot be stored or served now; nothing was recorded. The log line has the details."""
    ident = error_id(str(exc))
    log.error("blob store error %s on %s %s: %s", ident, request.method, request.url.path, exc)
    detail = f"the blob store is unavailable (error id {ident}); retry later"
    return problem_response(
        request, 503, "blob-store-unavailable", detail, headers={"Retry-After": "1"}
    )


async def _on_stalled(request: Request, exc: Exception) -> JSONResponse:
    summary = stalled_summary(str(exc))
    log.error("view stalled on %s %s: %s: %s", request.method, request.url.path, summary, exc)
    return problem_response(
        request, 503, "view-stalled", f"a view is stalled: {summary}", headers={"Retry-After": "5"}
    )


async def _on_bug(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
    return problem_response(
        request, 500, "internal-error", f"an internal error occurred (incident {incident})"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(ApiProblem, _on_api_problem)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(CommandError, _on_domain)
    app.add_exception_handler(DomainError, _on_domain)
    app.add_exception_handler(OperationalError, _on_store_down)
    app.add_exception_handler(InterfaceError, _on_store_down)
    app.add_exception_handler(SqlOperationalError, _on_store_down)
    app.add_exception_handler(InternalError, _on_internal_db)
    app.add_exception_handler(SqlInternalError, _on_internal_db)
    app.add_exception_handler(ProjectionStalled, _on_stalled)
    app.add_exception_handler(BlobStoreError, _on_blob_store)
    app.add_exception_handler(Exception, _on_bug)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems an operation may answer with.

    FastAPI files them under the route's media type; ``problem_media_types`` corrects that.
    """
    return {
        status: {"model": Problem, "description": _TITLES.get(status, "Error")}
        for status in statuses
    }


def problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare every error response of an OpenAPI document as application/problem+json."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    return schema
