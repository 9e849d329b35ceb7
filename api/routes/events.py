"""The event log: pages of events, and a Server-Sent Events stream resumable by Last-Event-ID.

Positions become visible in commit order (the store's table lock), so a reader that resumes
after the last position it saw never skips an event and never sees one twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api import log
from api import schemas as s
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
    return await read(lambda: log.page(read.api.janus.reader, after, limit))


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
) -> int:
    """Where the stream starts; refusals happen here, before the stream's 200 is sent."""
    api = read.api
    if api.open_streams >= api.settings.sse_max_streams:
        raise ApiProblem(
            429,
            "too-many-streams",
            "too many open event streams; retry later",
            headers={"Retry-After": "5"},
        )
    if last_event_id is not None:
        return int(last_event_id)
    if after is not None:
        return after
    return await api.run(api.janus.reader.head)


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
    start: Annotated[int, Depends(stream_start)],
    follow: Annotated[
        bool, Query(description="Keep the stream open for new events; false ends at the head.")
    ] = True,
    limit: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="End after this many events.")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Follow the log as Server-Sent Events, from ?after, or from Last-Event-ID on reconnect."""
    reader = api.janus.reader
    position, sent = start, 0
    api.open_streams += 1
    try:
        while limit is None or sent < limit:
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
    finally:
        api.open_streams -= 1
