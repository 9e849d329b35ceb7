"""The event log: pages of events, and a Server-Sent Events stream resumable by Last-Event-ID.

Positions become visible in commit order (the store's table lock), so a reader that resumes
after the last position it saw never skips an event and never sees one twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api import log
from api import schemas as s
from api.auth import Principal
from api.context import ApiContext
from api.deps import Api, Viewer
from api.problems import ApiProblem, responses

router = APIRouter(prefix="/v1/events", tags=["events"])

BATCH = 200


@router.get("", response_model=s.EventPage, responses=responses(401, 403, 422, 503))
async def list_events(
    read: Viewer,
    after: Annotated[int, Query(ge=0, le=2**62, description="Events after this position.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> s.EventPage:
    """Events in log order, straight from the event store."""
    return await read(lambda: log.page(read.api.parts.reader, after, limit))


@dataclass(frozen=True)
class StreamStart:
    """Where a stream starts and whose key holds its slot."""

    position: int
    principal: Principal


async def stream_start(
    read: Viewer,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Start after this position; default: the head."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^[0-9]{1,18}$",
            description="Resume after this position (sent by EventSource on reconnect); "
            "takes precedence over ?after.",
        ),
    ] = None,
) -> AsyncIterator[StreamStart]:
    """Where the stream starts; refusals happen here, before the stream's 200 is sent.

    The stream's slot is taken here and given back when the stream ends: FastAPI runs the rest
    of this dependency after the response, streamed or not, has finished.
    """
    api, scope = read.api, read.principal.scope
    if api.open_streams >= api.settings.sse_max_streams:
        raise _too_many("too many open event streams; retry later")
    if api.streams_by_key[scope] >= api.settings.sse_max_streams_per_key:
        raise _too_many(
            f"this API key already holds {api.settings.sse_max_streams_per_key} open event "
            "streams; close one first"
        )
    if last_event_id is not None:
        position = int(last_event_id)
    elif after is not None:
        position = after
    else:
        position = await api.run(api.parts.reader.head)
    api.open_streams += 1
    api.streams_by_key[scope] += 1
    try:
        yield StreamStart(position, read.principal)
    finally:
        api.open_streams -= 1
        api.streams_by_key[scope] -= 1
        if api.streams_by_key[scope] <= 0:
            del api.streams_by_key[scope]


def _too_many(detail: str) -> ApiProblem:
    return ApiProblem(429, "too-many-streams", detail, headers={"Retry-After": "5"})


async def _key_still_valid(api: ApiContext, principal: Principal) -> bool:
    """A stream outlives the request that opened it, so its key is checked again as it runs:
    through the verifier's cache, so a revocation ends the stream within the cache time."""
    if principal.key_id is None:
        return True
    known, info = api.verifier.cached(principal.key_id)
    if not known:
        info = await api.run(api.verifier.load, principal.key_id)
    return info is not None and info.active


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "One message per event: id is its position, event its type, data "
            "the event as GET /v1/events shows it."
        },
        **responses(401, 403, 422, 429, 503),
    },
)
async def stream_events(
    api: Api,
    start: Annotated[StreamStart, Depends(stream_start)],
    follow: Annotated[
        bool, Query(description="Keep the stream open for new events; false ends at the head.")
    ] = True,
    limit: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="End after this many events.")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Follow the log as Server-Sent Events, from ?after, or from Last-Event-ID on reconnect.

    The stream ends when its API key is revoked (checked before every batch)."""
    reader = api.parts.reader
    position, sent = start.position, 0
    while limit is None or sent < limit:
        if not await _key_still_valid(api, start.principal):
            return
        want = BATCH if limit is None else min(BATCH, limit - sent)
        events = await api.run(log.read_events, reader, position, want)
        for event in events:
            yield ServerSentEvent(
                id=str(event.position), event=event.type, raw_data=event.model_dump_json()
            )
            position = event.position
        sent += len(events)
        if not events:
            if not follow:
                return
            await anyio.sleep(api.settings.sse_poll_seconds)
