"""``janus ingest`` and ``janus documents``: documents in, listed, shown, retracted.

Each command builds its own Janus from settings (``JANUS_*``), so it works beside a running
``janus run`` / ``janus serve`` as well as alone on the embedded store. The bytes go to the blob
store (files under the home, or S3 when ``JANUS_S3_URL`` is set) before each document's event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy.engine import RowMapping

from adapters.blobs import BlobStoreError
from bootstrap.documents import build_blob_store, build_document_ingest, document_view_readers
from cli.common import (
    ActorName,
    JsonFlag,
    cli_errors,
    err,
    error_text,
    fail,
    fresh,
    grid,
    invocation,
    open_janus,
    out,
    print_json,
    resolve,
    when,
)
from commands import models as m
from commands.errors import IdConflict, NotFound
from commands.ingest import Ingested, IngestRefused
from domain.document import DocumentStatus
from domain.errors import DomainError
from projections.document_views import views_of
from projections.relational import documents
from replay import render

app = typer.Typer(
    no_args_is_help=True, help="Ingested documents: list, show, retract (`janus ingest` adds)."
)


@contextmanager
def _errors() -> Iterator[None]:
    """The shared boundary, plus a blob store that refuses (bad credentials, unusable bucket)."""
    with cli_errors():
        try:
            yield
        except BlobStoreError as error:
            fail(f"blob store: {error}")


# -- janus ingest ----------------------------------------------------------------------------------


@dataclass
class Summary:
    new: list[Ingested] = field(default_factory=list)
    already: list[Ingested] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": [_ingested(done) for done in self.new],
            "already_ingested": [_ingested(done) for done in self.already],
            "refused": [{"path": str(path), "reason": why} for path, why in self.refused],
        }


def _ingested(done: Ingested) -> dict[str, Any]:
    return {
        "document_id": str(done.document_id),
        "title": done.title,
        "source": done.source_uri,
        "media_type": done.content_type,
        "size_bytes": done.size_bytes,
        "sha256": done.sha256,
        "position": done.position,
    }


def files_under(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Each file named, and every file under each folder named (hidden ones left out), in order;
    and the paths that are neither."""
    found: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file())
            found += [p for p in inside if not _hidden(p.relative_to(path))]
        else:
            missing.append((path, "no such file or folder"))
    return found, missing


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


# Refusals of one file: the rest go on. A store that is down stops the run (one line, exit 1).
_REFUSALS = (IngestRefused, ValidationError, DomainError, IdConflict, OSError)


def ingest_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files and folders (read recursively; hidden files left out)."),
    ],
    media_type: Annotated[
        str | None,
        typer.Option("--type", help="Declare the media type (default: from each file's suffix)."),
    ] = None,
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest documents: text, Markdown, HTML and PDF. Each file's bytes are stored, then the
    document is recorded; the same file again records nothing new. Exit 1 if any was refused."""
    with _errors(), open_janus() as janus:
        ingest = build_document_ingest(janus.settings, janus.commands)
        inv = invocation(actor_name)
        files, missing = files_under(paths)
        summary = Summary(refused=list(missing))
        columns = (TextColumn("[bold]ingesting"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err(), transient=True) as progress:
            task = progress.add_task("ingest", total=len(files))
            for path in files:
                try:
                    done = ingest.ingest_file(path, inv, media_type=media_type)
                except _REFUSALS as refusal:
                    summary.refused.append((path, _reason(refusal)))
                else:
                    (summary.new if done.new else summary.already).append(done)
                progress.advance(task)
    _report(summary, as_json)
    if summary.refused:
        raise typer.Exit(1)


def _reason(refusal: Exception) -> str:
    if isinstance(refusal, OSError):
        return refusal.strerror or str(refusal)
    return error_text(refusal)


def _report(summary: Summary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_dict())
        return
    console = out()
    for done in summary.new:
        console.print(f"document {done.document_id} registered: {escape(done.title)}")
    for done in summary.already:
        console.print(f"document {done.document_id} already ingested: {escape(done.title)}")
    for path, why in summary.refused:
        console.print(f"[red]refused[/] {escape(str(path))}: {escape(why)}", soft_wrap=True)
    console.print(
        f"{len(summary.new)} new, {len(summary.already)} already ingested, "
        f"{len(summary.refused)} refused"
    )


# -- janus documents -------------------------------------------------------------------------------


def _row(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "source": row["source_uri"],
        "media_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "blob_key": row["blob_key"],
        "status": row["status"],
        "registered_at": render.aware(row["registered_at"]).isoformat(),
        "retraction_reason": row["retraction_reason"],
        "retracted_at": row["retracted_at"] and render.aware(row["retracted_at"]).isoformat(),
    }


@app.command("list")
def list_documents(
    status: Annotated[
        DocumentStatus | None, typer.Option(help="Only documents in this status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Documents, newest first: title, status, media type, size."""
    with _errors(), open_janus() as janus:
        fresh(janus)
        rows = janus.views.documents(status.value if status else None, limit)
    if as_json:
        print_json([_row(row) for row in rows])
        return
    table = grid(
        "documents", "id", "title", "status", "type", "bytes", "registered", fold=("title",)
    )
    for row in rows:
        table.add_row(
            render.short(row["id"]),
            escape(row["title"]),
            row["status"],
            row["content_type"],
            str(row["size_bytes"]),
            when(row["registered_at"]),
        )
    out().print(table)


@app.command("show")
def show_document(
    document_id: Annotated[str, typer.Argument(help="The document's id (or a unique prefix).")],
    as_json: JsonFlag = False,
) -> None:
    """One document: what was recorded, and what each view holds for it (status, chunks)."""
    with _errors(), open_janus() as janus:
        ident = resolve(janus, documents, document_id)
        fresh(janus)
        row = janus.views.document(ident)
        if row is None:
            raise NotFound("document", ident)
        readers = document_view_readers(build_blob_store(janus.settings))
        views = {name: vars(seen) for name, seen in views_of(ident, readers).items()}
    shown = {**_row(row), "views": views}
    if as_json:
        print_json(shown)
        return
    console = out()
    for name, value in shown.items():
        if name != "views" and value is not None:
            console.print(f"[bold]{name}[/]: {escape(str(value))}", soft_wrap=True)
    for name, seen in views.items():
        reason = f" ({escape(str(seen['reason']))})" if seen["reason"] else ""
        chunks = len(seen["chunks"])
        console.print(f"[bold]{name} view[/]: {seen['status']}{reason}, {chunks} chunks")


@app.command("retract")
def retract_document(
    document_id: Annotated[str, typer.Argument(help="The document's id (or a unique prefix).")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail and the views.")],
    actor_name: ActorName = None,
) -> None:
    """Withdraw a document from every view (its bytes stay: they are part of the record)."""
    with _errors(), open_janus() as janus:
        ident = resolve(janus, documents, document_id)
        cmd = m.RetractDocument(document_id=ident, reason=reason)
        result = janus.commands.retract_document(cmd, invocation(actor_name))
    out().print(f"document {result.aggregate_id}: {result.outcome}")
