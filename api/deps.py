"""Dependencies, as ``Annotated`` aliases the routes declare: who calls, how fresh, what key.

Each alias is one dependency that authenticates, checks the role and carries what the handler
needs. It is an API-key security scheme itself (a ``SecurityBase``), so OpenAPI documents the
scheme on every operation that uses it, yet FastAPI resolves one dependency per request, not a
scheme nested under a dependency: each nesting level costs FastAPI's resolver more per request
than the key check itself. All are ``async``: the one hop to a worker thread happens when the
handler runs its blocking work (``Read.__call__``, ``Call.respond``). (No ``from __future__
import annotations`` here: FastAPI must resolve the annotations of the ``__call__`` methods.)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.responses import Response
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems
from api.auth import LOCAL_ADMIN, Principal, forbidden, unauthorized
from api.context import ApiContext
from api.idempotency import StoredResponse, fingerprint
from api.telemetry import current_trace_context
from commands.errors import IdempotencyConflict
from commands.invocation import Invocation
from commands.keys import claimed_key_id
from domain.api_key import Role

T = TypeVar("T")

MAX_PAGE = 1_000


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.janus_api
    return context


async def api_context(request: Request) -> ApiContext:
    return _context(request)


Api = Annotated[ApiContext, Depends(api_context)]


def _bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, as FastAPI's ``HTTPBearer`` reads it."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not token or scheme.lower() != "bearer":
        return None
    return token


async def _authorize(api: ApiContext, token: str | None, role: Role) -> Principal:
    if not api.auth_required:
        return LOCAL_ADMIN
    if token is None:
        raise unauthorized("missing", api.denials)
    key_id = claimed_key_id(token)
    if key_id is None:
        raise unauthorized("malformed", api.denials)
    known, info = api.verifier.cached(key_id)
    if not known:
        info = await api.run(api.verifier.load, key_id)
    if info is None:
        raise unauthorized("unknown", api.denials)
    if not info.active:
        raise unauthorized("revoked", api.denials)
    if not info.matches(token):
        raise unauthorized("mismatch", api.denials)
    principal = Principal(info.name, info.role, info.id)
    if not principal.role.allows(role):
        raise forbidden(principal, role, api.denials)
    return principal


class _ApiKeyScheme(SecurityBase):
    """``Authorization: Bearer <API key>``, documented as the ``ApiKey`` scheme."""

    def __init__(self, role: Role) -> None:
        self.model = HTTPBearerModel(
            description="An API key from `janus keys create NAME --role ROLE`."
        )
        self.scheme_name = "ApiKey"
        self.role = role

    async def principal(self, request: Request) -> tuple[ApiContext, Principal]:
        api = _context(request)
        return api, await _authorize(api, _bearer_token(request), self.role)


class AuthBeforeUpload:
    """Checks an upload's API key before its body is read.

    FastAPI reads a multipart body (spooling the file to disk) before it resolves any
    dependency, so without this an unauthenticated caller could make the server take in a file
    up to the size cap before its 401. The route's own dependency checks again (the key cache
    makes that cheap); a refused caller's body is never received.
    """

    def __init__(self, app: ASGIApp, uploads: dict[str, Role]) -> None:
        self.app = app
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        role = self.uploads.get(scope["path"]) if scope["type"] == "http" else None
        if role is not None and scope["method"] == "POST":
            request = Request(scope)
            try:
                await _authorize(_context(request), _bearer_token(request), role)
            except problems.ApiProblem as denied:
                response = problems.problem_response(
                    request, denied.status, denied.code, denied.detail, headers=denied.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Read:
    """An authorized read: runs its query in a worker thread, after ?min_position if given."""

    api: ApiContext
    principal: Principal
    min_position: int | None = None

    async def __call__(self, query: Callable[[], T]) -> T:
        return await self.api.run(self._fresh, query)

    def _fresh(self, query: Callable[[], T]) -> T:
        self.api.waiter.wait(self.min_position)
        return query()


MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,
        description="Wait (bounded) until the views have applied this log position: pass the "
        "position a write returned to read your own write.",
    ),
]


class _Reader(_ApiKeyScheme):
    async def __call__(self, request: Request) -> Read:
        return Read(*await self.principal(request))


class _FreshReader(_ApiKeyScheme):
    async def __call__(self, request: Request, min_position: MinPosition = None) -> Read:
        return Read(*await self.principal(request), min_position or None)


Viewer = Annotated[Read, Depends(_Reader(Role.VIEWER))]
Admin = Annotated[Read, Depends(_Reader(Role.ADMIN))]
FreshViewer = Annotated[Read, Depends(_FreshReader(Role.VIEWER))]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="The next_cursor of the previous page."),
]


@dataclass(frozen=True)
class Produced:
    """What a write produced, and whether the command layer answered it from its record."""

    model: BaseModel
    replayed: bool = False


@dataclass(frozen=True)
class Call:
    """One state-changing request: who acts, under which key, and how to answer it."""

    api: ApiContext
    principal: Principal
    invocation: Invocation
    idempotency_key: str | None
    fingerprint: str
    min_position: int | None = None

    async def respond(
        self,
        produce: Callable[[], Produced],
        status_code: int = 200,
        location: Callable[[Any], str] | None = None,
        replays_itself: bool = True,
    ) -> Response:
        """Run the write once per Idempotency-Key; a retry gets the first response.

        ``replays_itself``: the write is a keyed command, which answers a retry from its own
        record; then the kept response is looked up only for a replay. Otherwise it is looked
        up first.
        """
        return await self.api.run(self._respond, produce, status_code, location, replays_itself)

    def _respond(
        self,
        produce: Callable[[], Produced],
        status_code: int,
        location: Callable[[Any], str] | None,
        replays_itself: bool,
    ) -> Response:
        self.api.waiter.wait(self.min_position)
        store, scope, key = self.api.responses, self.principal.scope, self.idempotency_key
        if key is None:
            model = produce().model
            return _json(model.model_dump_json(), status_code, location and location(model))
        kept = None if replays_itself else store.get(scope, key)
        if kept is None:
            produced = produce()
            if produced.replayed:
                kept = store.get(scope, key)
            if kept is None:
                ours = StoredResponse(
                    self.fingerprint,
                    status_code,
                    produced.model.model_dump_json(),
                    location(produced.model) if location else None,
                )
                kept = store.put(scope, key, ours)
                replayed = produced.replayed or kept is not ours
            else:
                replayed = True
        else:
            replayed = True
        if kept.fingerprint != self.fingerprint:
            raise IdempotencyConflict("Idempotency-Key reused for a different request")
        response = _json(kept.body, kept.status, kept.location)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response


def _json(body: str, status_code: int, location: str | None) -> Response:
    headers = {"Location": location} if location else None
    return Response(body, status_code, headers=headers, media_type="application/json")


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="Retry safely: the same key returns the first response and records "
        "nothing new; reusing it with a different request is a 409. Scoped to your API key.",
    ),
]


class Caller(_ApiKeyScheme):
    async def __call__(self, request: Request, idempotency_key: IdempotencyKey = None) -> Call:
        return await self.call(request, idempotency_key, None)

    async def call(
        self,
        request: Request,
        idempotency_key: str | None,
        min_position: int | None,
        *,
        body: bool = True,
    ) -> Call:
        """``body=False``: the route fingerprints the request itself (see ``_UploadCaller``)."""
        api, principal = await self.principal(request)
        if idempotency_key:
            command_key: str | None = f"api:{principal.scope}:{idempotency_key}"
            url = request.url
            raw = await request.body() if body else b""
            digest = fingerprint(request.method, url.path, url.query, raw)
        else:
            # Only a keyed request is ever compared with another, so only it is fingerprinted.
            command_key, digest = None, ""
        return Call(
            api=api,
            principal=principal,
            invocation=Invocation(
                principal.actor,
                idempotency_key=command_key,
                trace_context=current_trace_context(),
            ),
            idempotency_key=idempotency_key,
            fingerprint=digest,
            min_position=min_position or None,
        )


class _FreshCaller(Caller):
    async def __call__(
        self,
        request: Request,
        idempotency_key: IdempotencyKey = None,
        min_position: MinPosition = None,
    ) -> Call:
        return await self.call(request, idempotency_key, min_position)


class _UploadCaller(Caller):
    """A multipart upload: its raw body (a boundary each client picks anew, a file that may be
    large) is not read here nor compared; the route fingerprints the parts it received."""

    async def __call__(self, request: Request, idempotency_key: IdempotencyKey = None) -> Call:
        return await self.call(request, idempotency_key, None, body=False)


OperatorCall = Annotated[Call, Depends(Caller(Role.OPERATOR))]
OperatorUpload = Annotated[Call, Depends(_UploadCaller(Role.OPERATOR))]
FreshOperatorCall = Annotated[Call, Depends(_FreshCaller(Role.OPERATOR))]
ApproverCall = Annotated[Call, Depends(Caller(Role.APPROVER))]
AdminCall = Annotated[Call, Depends(Caller(Role.ADMIN))]
