"""Documents the ingestion tests read: real PDFs built with fpdf2, HTML and Markdown samples."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

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
