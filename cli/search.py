"""``janus search "text"``: the chunks closest in meaning, with their document and citation.

With the embedded default this process opens the vector view's Qdrant folder itself and first
brings the view up to the log's head (it is then the view's one process); while `janus serve`
or `janus run` holds that folder the command stops with one line naming the holder: search
through the running server (`POST /v1/search`) instead. With a Qdrant server the view is kept by
its projector and the command only reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bootstrap.container import Janus
from cli.common import JsonFlag, cli_errors, fail, open_janus, print_json
from projections.registry import TargetUnavailable
from projections.runner import ProjectionStalled
from projections.search import SearchFilters, SearchResult, ViewNotReady

CATCH_UP_SECONDS = 600.0


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
    as_json: JsonFlag = False,
) -> None:
    """Semantic search over the ingested documents' chunks (the vector view)."""
    if not query.strip():
        fail("the query is empty")
    with cli_errors(), open_janus() as janus:
        try:
            hits = _search(janus, query, k, SearchFilters(document, source, since, until))
        except (TargetUnavailable, ViewNotReady, ProjectionStalled, TimeoutError) as error:
            fail(f"the vector view: {error}")
    if as_json:
        print_json({"hits": [h.as_dict() for h in hits]})
        return
    Console(highlight=False).print(_table(hits) if hits else "no matching chunks")


def _search(janus: Janus, query: str, k: int, filters: SearchFilters) -> list[SearchResult]:
    searcher = janus.knowledge.search()  # opens the index: refused while another process has it
    if janus.settings.qdrant_url is None:
        view = janus.knowledge_views["vector"]
        view.setup()
        with Console(stderr=True).status("bringing the vector view up to date"):
            view.catch_up(timeout=CATCH_UP_SECONDS)
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
