"""The retrieval port: knowledge the agent reads before a step, with ids and a log position.

``RelationalHistoryRetriever`` reads earlier goals and their outcomes from the relational views;
``SearchRetriever`` the vector view's chunks, ``HybridRetriever`` those expanded through the
graph. Every item has a stable id and the result says which log position the store had reached,
so a recorded decision names exactly what its prompt was built from.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from adapters.graph import GraphStoreError
from projections.hybrid import HybridHit
from projections.registry import TargetUnavailable
from projections.relational.tables import goals
from projections.search import SearchResult, ViewNotReady

log = logging.getLogger(__name__)

WORD = re.compile(r"[a-z0-9]{3,}")
STOP_WORDS = frozenset({"the", "and", "for", "all", "with", "please", "this", "that"})


@dataclass(frozen=True)
class Knowledge:
    id: str
    text: str


@dataclass(frozen=True)
class Retrieved:
    items: tuple[Knowledge, ...]
    position: int  # the log position the store had reached when it was read

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


class Retriever(ABC):
    @abstractmethod
    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        """Up to ``limit`` items relevant to ``query`` (never about the goal ``exclude``)."""


class NoRetriever(Retriever):
    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        return Retrieved((), 0)


def keywords(text: str, limit: int = 4) -> list[str]:
    found = [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]
    return list(dict.fromkeys(found))[:limit]


class RelationalHistoryRetriever(Retriever):
    """Finished goals whose text shares a word with the query, newest first, with outcomes."""

    def __init__(self, engine: Engine, position: Callable[[], int]) -> None:
        self.engine = engine
        self.position = position

    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        # The position is read first: the rows read after it are at least that fresh.
        position = self.position()
        words = keywords(query)
        if not words:
            return Retrieved((), position)
        table = goals
        statement = (
            select(table.c.id, table.c.text, table.c.status, table.c.outcome)
            .where(table.c.status.in_(("completed", "failed", "cancelled")))
            .where(or_(*(table.c.text.ilike(f"%{w}%", escape="\\") for w in words)))
            .order_by(table.c.updated_at.desc())
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
        items = tuple(
            Knowledge(f"goal:{row.id}", f"earlier goal {row.text!r}: {row.status}, {row.outcome}")
            for row in rows
            if exclude is None or row.id != str(exclude)
        )
        return Retrieved(items[:limit], position)


class SearchRetriever(Retriever):
    """Chunks of ingested documents closest in meaning to the query (the vector view).

    Each item's id is the chunk's point id, so a decision's context ids name the exact chunks
    its prompt quoted (the graph view links Decision -[:USED_CONTEXT]-> Chunk by them). While
    the view cannot be read (another process holds the embedded index, no collection for this
    model yet) it retrieves nothing rather than stopping the agent.
    """

    def __init__(
        self, search: Callable[[str, int], Sequence[SearchResult]], position: Callable[[], int]
    ) -> None:
        self.search = search
        self.position = position

    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        position = self.position()  # first: the chunks read after it are at least that fresh
        if not query.strip():
            return Retrieved((), position)
        try:
            hits = self.search(query, limit)
        except (TargetUnavailable, ViewNotReady) as error:
            log.warning("document search unavailable to the agent: %s", error)
            return Retrieved((), position)
        items = tuple(
            Knowledge(
                str(hit.chunk_id),
                f"from {hit.citation.title or hit.citation.source} "
                f"(chunk {hit.citation.chunk_index}): {hit.text}",
            )
            for hit in hits
        )
        return Retrieved(items, position)


class HybridRetriever(Retriever):
    """Chunks found by hybrid retrieval (projections/hybrid.py): the vector view's nearest, and
    what the graph view links them to (neighbouring chunks, chunks sharing an entity).

    Only chunks are kept (their point ids are what the graph's USED_CONTEXT edges name), so a
    decision's context ids are exactly the hybrid hits its prompt quoted. The position is the
    least of the two views'. While the graph cannot be read, ``fallback`` (vector search)
    answers; while the vector view cannot, nothing is retrieved rather than stopping the agent.
    """

    def __init__(
        self,
        search: Callable[[str, int], Sequence[HybridHit]],
        position: Callable[[], int],
        fallback: Retriever | None = None,
    ) -> None:
        self.search = search
        self.position = position
        self.fallback = fallback

    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        position = self.position()  # first: the chunks read after it are at least that fresh
        if not query.strip():
            return Retrieved((), position)
        try:
            # Decisions rank among the hits too: ask for enough to keep `limit` chunks.
            hits = self.search(query, limit * 2)
        except GraphStoreError as error:
            log.warning("graph view unavailable to the agent, vector search only: %s", error)
            if self.fallback is None:
                return Retrieved((), position)
            return self.fallback.retrieve(query, exclude, limit)
        except (TargetUnavailable, ViewNotReady) as error:
            log.warning("document search unavailable to the agent: %s", error)
            return Retrieved((), position)
        chunks = [hit for hit in hits if hit.kind == "chunk"][:limit]
        items = tuple(
            Knowledge(hit.id, f"from {hit.source or 'a document'} ({hit.via}): {hit.text}")
            for hit in chunks
        )
        return Retrieved(items, position)


class CombinedRetriever(Retriever):
    """Each retriever's items in turn, up to ``limit``. The position is the least fresh one of
    the retrievers whose items were kept (the last retriever's when none was)."""

    def __init__(self, *retrievers: Retriever) -> None:
        if not retrievers:
            raise ValueError("give at least one retriever")
        self.retrievers = retrievers

    def retrieve(self, query: str, exclude: UUID | None = None, limit: int = 3) -> Retrieved:
        items: list[Knowledge] = []
        positions: list[int] = []
        last = 0
        for retriever in self.retrievers:
            found = retriever.retrieve(query, exclude, limit)
            last = found.position
            kept = found.items[: limit - len(items)]
            if kept:
                items.extend(kept)
                positions.append(found.position)
        return Retrieved(tuple(items), min(positions, default=last))
