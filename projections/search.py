"""Semantic search over the vector view: chunks with their document, score and citation.

Reads the live generation through the view's alias, embedding the query with the same model the
view was built with; when the live collection is another model's (a rebuild for a new model has
not switched yet) the search is refused rather than comparing two vector spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.embeddings import Embedder
from adapters.vectors import Between, FilterValue, VectorIndex

__all__ = ["Citation", "SearchFilters", "SearchResult", "VectorSearch", "ViewNotReady"]

SNIPPET_CHARS = 200


class ViewNotReady(RuntimeError):
    """The vector view has no live collection for this model yet."""


@dataclass(frozen=True)
class Citation:
    source: str
    title: str
    chunk_index: int
    char_offset: int
    sha256: str
    event_id: str
    position: int


@dataclass(frozen=True)
class SearchResult:
    chunk_id: UUID
    document_id: UUID
    score: float
    text: str
    citation: Citation

    @property
    def snippet(self) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": str(self.chunk_id),
            "document_id": str(self.document_id),
            "score": self.score,
            "text": self.text,
            "citation": {
                "source": self.citation.source,
                "title": self.citation.title,
                "chunk_index": self.citation.chunk_index,
                "char_offset": self.citation.char_offset,
                "sha256": self.citation.sha256,
                "event_id": self.citation.event_id,
                "position": self.citation.position,
            },
        }


@dataclass(frozen=True)
class SearchFilters:
    document_id: UUID | None = None
    source: str | None = None
    since: datetime | None = None  # recorded at or after
    until: datetime | None = None  # recorded at or before

    def where(self) -> dict[str, FilterValue]:
        where: dict[str, FilterValue] = {}
        if self.document_id is not None:
            where["document_id"] = str(self.document_id)
        if self.source is not None:
            where["source"] = self.source
        if self.since is not None or self.until is not None:
            where["recorded_at"] = Between(
                gte=self.since.timestamp() if self.since else None,
                lte=self.until.timestamp() if self.until else None,
            )
        return where


class VectorSearch:
    def __init__(self, index: VectorIndex, embedder: Embedder, alias: str) -> None:
        self.index = index
        self.embedder = embedder
        self.alias = alias
        # The live collection must be one of this model's generations (projections/knowledge.py).
        self._ours = re.compile(rf"{re.escape(alias)}__{re.escape(embedder.slug)}__g\d+")

    def live(self) -> str | None:
        """The live collection to search; None while it holds nothing (the view has not run yet:
        min_position waits for it), ViewNotReady while it is another model's."""
        live = self.index.alias_target(self.alias)
        if live is None:
            return None
        if not self._ours.fullmatch(live):
            raise ViewNotReady(
                f"the vector view is another model's ({live}) until its rebuild for "
                f"{self.embedder.model_name} switches"
            )
        if self.index.count(live) == 0:
            return None  # nothing to find: spare loading the model for the query
        return live

    def search(
        self, query: str, k: int = 10, filters: SearchFilters | None = None
    ) -> list[SearchResult]:
        live = self.live()
        if live is None:
            return []
        vector = self.embedder.embed_query(query)
        hits = self.index.search(live, vector, k, (filters or SearchFilters()).where() or None)
        return [_result(hit.id, hit.score, hit.payload) for hit in hits]


def _result(chunk_id: UUID, score: float, payload: Mapping[str, Any]) -> SearchResult:
    return SearchResult(
        chunk_id=chunk_id,
        document_id=UUID(str(payload["document_id"])),
        score=float(score),
        text=str(payload["text"]),
        citation=Citation(
            source=str(payload.get("source", "")),
            title=str(payload.get("title", "")),
            chunk_index=int(payload["chunk_index"]),
            char_offset=int(payload.get("start", 0)),
            sha256=str(payload.get("sha256", "")),
            event_id=str(payload.get("event_id", "")),
            position=int(payload.get("position", 0)),
        ),
    )
