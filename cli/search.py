"""``janus search "text"``: the chunks closest in meaning, with their document and citation.

With the embedded default this process opens the vector view's Qdrant folder itself and first
brings the view up to the log's head (it is then the view's one process); while `janus serve`
or `janus run` holds that folder the command stops with one line naming the holder: search
through the running server (`POST /v1/search`) instead. With a Qdrant server the view is kept by
its projector and the command only reads. ``--mode hybrid`` also reads the graph view (brought
up to date the same way when embedded) and prints each hit's evidence ("via").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.graph import GraphStoreError
from bootstrap.container import Janus
from cli.common import JsonFlag, cli_errors, fail, open_janus, print_json
from projections.hybrid import HybridHit
from projections.registry import TargetUnavailable
from projections.runner import ProjectionStalled
from projections.search import SNIPPET_CHARS, SearchFilters, SearchResult, ViewNotReady

CATCH_UP_SECONDS = 600.0
UNAVAILABLE = (TargetUnavailable, ViewNotReady, ProjectionStalled, TimeoutError, GraphStoreError)


class Mode(StrEnum):
    VECTOR = "vector"
    HYBRID = "hybrid"


def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many chunks.")] = 5,
    document: Annotated[
        UUID | None, typer.Option("--document", help="Only this document's chunks.")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    since: Annotated[
        datetime | None, typer.Option("--from", help="Documents registered at or after this.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option("--to", help="Documents registered at or before this.")
    ] = None,
    mode: Annotated[
        Mode, typer.Option("--mode", help="vector, or hybrid: expanded through the graph view.")
    ] = Mode.VECTOR,
    as_json: JsonFlag = False,
) -> None:
    """Semantic search over the ingested documents' chunks (the vector view, or hybrid)."""
    if not query.strip():
        fail("the query is empty")
    filters = SearchFilters(document, source, since, until)
    with cli_errors(), open_janus() as janus:
        try:
            if mode is Mode.HYBRID:
                found = _hybrid(janus, query, k, filters)
                body = {"mode": "hybrid", "hits": [h.as_json() for h in found]}
                shown = _hybrid_table(found) if found else None
            else:
                hits = _search(janus, query, k, filters)
                body = {"mode": "vector", "hits": [h.as_dict() for h in hits]}
                shown = _table(hits) if hits else None
        except UNAVAILABLE as error:
            views = "vector and graph views" if mode is Mode.HYBRID else "vector view"
            fail(f"the {views}: {str(error).splitlines()[0]}")
    if as_json:
        print_json(body)
        return
    Console(highlight=False).print(shown or "no matching chunks")


def _catch_up(janus: Janus, names: tuple[str, ...]) -> None:
    """Embedded views are this process's to run: bring them up to the log's head first."""
    for name in names:
        view = janus.knowledge_views[name]
        view.setup()
        with Console(stderr=True).status(f"bringing the {name} view up to date"):
            view.catch_up(timeout=CATCH_UP_SECONDS)


def _search(janus: Janus, query: str, k: int, filters: SearchFilters) -> list[SearchResult]:
    searcher = janus.knowledge.search()  # opens the index: refused while another process has it
    if janus.settings.qdrant_url is None:
        _catch_up(janus, ("vector",))
    return searcher.search(query, k, filters)


def _hybrid(janus: Janus, query: str, k: int, filters: SearchFilters) -> list[HybridHit]:
    searcher = janus.knowledge.hybrid()
    embedded = []
    if janus.settings.qdrant_url is None:
        embedded.append("vector")
    if janus.settings.graph_url is None:
        embedded.append("graph")
    _catch_up(janus, tuple(embedded))
    return searcher.search(query, k, filters)


def _table(hits: list[SearchResult]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("score", "document", "chunk", "snippet"):
        table.add_column(column, justify="right" if column in ("score", "chunk") else "left")
    for hit in hits:
        citation = hit.citation
        document = f"{citation.title or hit.document_id}\n{citation.source}"
        table.add_row(
            f"{hit.score:.3f}",
            escape(document),
            f"{citation.chunk_index} @{citation.char_offset}",
            escape(hit.snippet),
        )
    return table


def _hybrid_table(hits: list[HybridHit]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("score", "kind", "via", "snippet"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for hit in hits:
        flat = " ".join(hit.text.split())
        snippet = flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
        table.add_row(f"{hit.score:.4f}", hit.kind, escape(hit.via), escape(snippet))
    return table
