"""Semantic search over the vector view: chunks with their document, score and citation.

``min_position`` waits (bounded) until the vector view has applied that log position, so a client
finds the document it just registered; past the wait it gets a 503 problem, as other reads do.
The vector view's target must be reachable from this process: with the embedded Qdrant folder
that is the process running the view (`janus serve`); elsewhere the request gets a 503 naming
the process that holds it. ``"mode": "hybrid"`` also reads the graph view (projections/hybrid.py)
and waits for both views' positions; a graph it cannot open here is a 503 as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from adapters.graph import GraphStoreError
from api.context import ApiContext
from api.deps import Viewer
from api.freshness import ViewWaiter
from api.problems import ApiProblem, responses
from projections.hybrid import HybridHit
from projections.registry import TargetUnavailable
from projections.search import SearchFilters, SearchResult, ViewNotReady

router = APIRouter(prefix="/v1/search", tags=["search"])

VIEWS = {"vector": ("vector",), "hybrid": ("vector", "graph")}


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: str = Field(min_length=1, max_length=2_000, description="What to look for.")
    mode: Literal["vector", "hybrid"] = Field(
        default="vector",
        description="vector: nearest chunks; hybrid: those expanded through the graph view "
        "(neighbouring chunks, chunks sharing entities, decisions that used them), re-ranked, "
        "each hit with its paths of evidence.",
    )
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
        description="Wait (bounded) until the vector view (and in hybrid mode the graph view) "
        "has applied this log position.",
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
    mode: Literal["vector"] = "vector"
    hits: list[SearchHitOut]
    position: int = Field(description="The log position the vector view had reached.")


class EvidenceStepOut(BaseModel):
    id: str
    label: str = Field(description="Chunk, Entity or Decision.")
    via: str | None = Field(description="The edge type that led here (VECTOR for a seed).")
    name: str | None = Field(description="An entity's name.")


class HybridHitOut(BaseModel):
    id: str = Field(description="A chunk's point id, or a decision's id.")
    kind: Literal["chunk", "decision"]
    score: float = Field(description="Reciprocal rank fusion of the vector and graph ranks.")
    text: str
    document_id: str | None
    vector_rank: int | None
    vector_score: float | None
    graph_rank: int | None
    source: str | None = Field(description="The document's title or source, when known.")
    paths: list[list[EvidenceStepOut]] = Field(description="How it was found, seed first.")
    via: str = Field(description="The paths in a few words.")


class HybridOut(BaseModel):
    mode: Literal["hybrid"] = "hybrid"
    hits: list[HybridHitOut]
    position: int = Field(description="The least log position the vector and graph views had.")


@router.post(
    "", response_model=SearchOut | HybridOut, responses=responses(400, 401, 403, 413, 422, 503)
)
async def search(body: SearchIn, read: Viewer) -> SearchOut | HybridOut:
    """The chunks closest in meaning to ``query``, filtered by document, source or time; in
    hybrid mode expanded through the graph view, each hit with its paths of evidence."""
    return await read.api.run(_search, read.api, body)


def _search(api: ApiContext, body: SearchIn) -> SearchOut | HybridOut:
    knowledge = api.parts.knowledge
    views = [knowledge.views[name] for name in VIEWS[body.mode]]
    filters = SearchFilters(body.document_id, body.source, body.recorded_from, body.recorded_to)
    try:
        for view in views:
            waiter = ViewWaiter(
                view, api.parts.reader, api.settings.read_wait_seconds, drive=api.waiter.drive
            )
            waiter.wait(body.min_position)
        if body.mode == "hybrid":
            found = knowledge.hybrid_search().search(body.query, body.k, filters)
            position = min(view.position for view in views)
            return HybridOut(hits=[_hybrid(hit) for hit in found], position=position)
        hits = knowledge.vector_search().search(body.query, body.k, filters)
    except (TargetUnavailable, ViewNotReady, GraphStoreError) as error:
        which = " and graph views" if body.mode == "hybrid" else " view"
        detail = f"the vector{which}: {str(error).splitlines()[0][:300]}"
        raise ApiProblem(503, "view-unavailable", detail, headers={"Retry-After": "1"}) from error
    return SearchOut(hits=[_hit(hit) for hit in hits], position=views[0].position)


def _hybrid(hit: HybridHit) -> HybridHitOut:
    return HybridHitOut.model_validate(hit.as_json())


def _hit(hit: SearchResult) -> SearchHitOut:
    return SearchHitOut.model_validate(hit.as_dict())
