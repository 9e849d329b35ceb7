"""Documents for tests: real PDFs built with fpdf2, HTML and Markdown samples, and documents put
into a Janus the way ingestion does it (the bytes in the blob store first, then the event)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from fpdf import FPDF

from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind

OPERATOR = Invocation(Actor(ActorKind.USER, "olga", role="operator"))

HTML_PAGE = b"""<!doctype html>
<html><head><title>Tab title</title><style>p { color: red }</style>
<script>var secret = "not visible";</script></head>
<body><h1>Door policy</h1><p>Lock the <b>front</b> door at night.</p>
<!-- a comment nobody sees --><noscript>enable scripts</noscript>
<ul><li>back door</li><li>garage</li></ul></body></html>"""

MARKDOWN_NOTE = "# Plants\n\nWater the **ferns** every Monday.\n"


def pdf_bytes(*pages: str) -> bytes:
    """A real PDF with one page per text (core font: Latin-1 text only)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def write_notes(folder: Path) -> dict[str, Path]:
    """A folder of one document per supported kind (and one nested), as `janus ingest` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deep").mkdir(exist_ok=True)
    files = {
        "text": folder / "todo.txt",
        "markdown": folder / "plants.md",
        "html": folder / "deep" / "policy.html",
        "pdf": folder / "manual.pdf",
    }
    files["text"].write_text("Buy light bulbs.\n")
    files["markdown"].write_text(MARKDOWN_NOTE)
    files["html"].write_bytes(HTML_PAGE)
    files["pdf"].write_bytes(pdf_bytes("The boiler manual.", "Bleed the radiators in autumn."))
    return files


def ingest(
    janus: Janus, text: str | bytes, source: str, media_type: str = "text/plain"
) -> tuple[UUID, int]:
    """The document's id and the log position of its registration."""
    data = text.encode() if isinstance(text, str) else text
    stored = janus.knowledge.blobs.put(data, media_type)
    result = janus.commands.register_document(
        m.RegisterDocument(
            source_uri=source,
            content_type=media_type,
            sha256=stored.sha256,
            size_bytes=stored.size,
        ),
        OPERATOR,
    )
    return result.aggregate_id, result.position


def retract(janus: Janus, document_id: UUID) -> int:
    result = janus.commands.retract_document(
        m.RetractDocument(document_id=document_id, reason="withdrawn"), OPERATOR
    )
    return result.position
