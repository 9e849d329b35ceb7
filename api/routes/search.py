"""Semantic search over the vector view: chunks with their document, score and citation.

``min_position`` waits (bounded) until the vector view has applied that log position, so a client
finds the document it just registered; past the wait it gets a 503 problem, as other reads do.
The vector view's target must be reachable from this process: with the embedded Qdrant folder
that is the process running the view (`janus serve`); elsewhere the request gets a 503 naming
the process that holds it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.context import ApiContext
from api.deps import Viewer
from api.freshness import ViewWaiter
from api.problems import ApiProblem, responses
from projections.registry import TargetUnavailable
from projections.search import SearchFilters, SearchResult, ViewNotReady

router = APIRouter(prefix="/v1/search", tags=["search"])

VIEW = "vector"


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: str = Field(min_length=1, max_length=2_000, description="What to look for.")
    k: int = Field(default=10, ge=1, le=100, description="How many chunks, best first.")
    document_id: UUID | None = Field(default=None, description="Only this document's chunks.")
    source: str | None = Field(
        default=None, min_length=1, max_length=2_000, description="Only chunks of this source."
    )
    recorded_from: datetime | None = Field(
        default=None, alias="from", description="Only documents registered at or after this."
    )
    recorded_to: datetime | None = Field(
        default=None, alias="to", description="Only documents registered at or before this."
    )
    min_position: int | None = Field(
        default=None,
        ge=0,
        le=2**62,
        description="Wait (bounded) until the vector view has applied this log position.",
    )


class CitationOut(BaseModel):
    source: str
    title: str
    chunk_index: int
    char_offset: int = Field(description="Where the chunk starts in the document's text.")
    sha256: str
    event_id: str
    position: int


class SearchHitOut(BaseModel):
    chunk_id: UUID = Field(description="The point id; what a decision records as context.")
    document_id: UUID
    score: float
    text: str
    citation: CitationOut


class SearchOut(BaseModel):
    hits: list[SearchHitOut]
    position: int = Field(description="The log position the vector view had reached.")


@router.post("", response_model=SearchOut, responses=responses(401, 403, 422, 503))
async def search(body: SearchIn, read: Viewer) -> SearchOut:
    """The chunks closest in meaning to ``query``, filtered by document, source or time."""
    return await read.api.run(_search, read.api, body)


def _search(api: ApiContext, body: SearchIn) -> SearchOut:
    view = api.janus.knowledge_views[VIEW]
    waiter = ViewWaiter(
        view, api.janus.reader, api.settings.read_wait_seconds, drive=api.waiter.drive
    )
    filters = SearchFilters(body.document_id, body.source, body.recorded_from, body.recorded_to)
    try:
        waiter.wait(body.min_position)
        hits = api.janus.knowledge.search().search(body.query, body.k, filters)
    except (TargetUnavailable, ViewNotReady) as error:
        raise ApiProblem(
            503, "view-unavailable", f"the vector view: {error}", headers={"Retry-After": "1"}
        ) from error
    return SearchOut(hits=[_hit(hit) for hit in hits], position=view.position)


def _hit(hit: SearchResult) -> SearchHitOut:
    return SearchHitOut.model_validate(hit.as_dict())
