"""Text extraction port: a stored blob's bytes and media type in, plain text out.

Extraction is deterministic (same bytes, same library versions, same text), so projections compute
it and a rebuild recomputes it. A blob whose text cannot be extracted raises `ExtractionFailed`
with a reason the views record; it never stalls a projection for other documents.

`DocumentExtractor` is the one the views use: it picks by media type among plain text and
Markdown (taken as they are), HTML (BeautifulSoup's built-in parser, visible text only) and PDF
(pypdf). `media_type_for` is how ingestion decides a document's media type: the declared one,
else the file's suffix; the result is what `Document.Registered` records and what the views
extract by.
"""

from __future__ import annotations

import codecs
import io
import re
from abc import ABC, abstractmethod
from pathlib import PurePath

from bs4 import BeautifulSoup, ParserRejectedMarkup
from bs4.element import NavigableString
from pypdf import PdfReader

__all__ = [
    "SUPPORTED_MEDIA_TYPES",
    "DocumentExtractor",
    "ExtractionFailed",
    "HtmlExtractor",
    "PdfExtractor",
    "PlainTextExtractor",
    "TextExtractor",
    "base_media_type",
    "media_type_for",
]

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
TEXT_TYPES = {PLAIN, MARKDOWN}
SUPPORTED_MEDIA_TYPES = frozenset({PLAIN, MARKDOWN, HTML, PDF})
# Other names in use for the same formats.
ALIASES = {"text/x-markdown": MARKDOWN, "application/xhtml+xml": HTML}
SUFFIXES = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
}
# What clients send when they do not know the type (curl -F for a .md file): not a declaration.
UNDECLARED = {"", "application/octet-stream", "binary/octet-stream"}
# Elements whose text a reader never sees on the page.
INVISIBLE = ("script", "style", "noscript", "template", "head", "iframe", "object", "svg")
# Elements that end a line of visible text: their text must not run into the next one.
BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset"}
    | {"figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header"}
    | {"hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "th"}
    | {"thead", "tr", "ul"}
)
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class ExtractionFailed(Exception):
    """The document's content yields no text; `reason` is shown in the views' status."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def base_media_type(media_type: str) -> str:
    """`Text/HTML; charset=utf-8` -> `text/html`; aliases to their common name."""
    base = media_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def charset_of(media_type: str) -> str | None:
    for parameter in media_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"').lower()
    return None


def media_type_for(declared: str | None, filename: str | None) -> str | None:
    """The media type a document is recorded with: the declared one (a `charset` parameter
    kept), else the one its file suffix names; None when neither tells."""
    if declared is not None and base_media_type(declared) not in UNDECLARED:
        base = base_media_type(declared)
        charset = charset_of(declared)
        return f"{base}; charset={charset}" if charset and base.startswith("text/") else base
    if filename:
        return SUFFIXES.get(PurePath(filename).suffix.lower())
    return None


def tidy(text: str) -> str:
    """One form for every extractor's output: Unix newlines, no NUL (no store keeps it), no lone
    surrogate (UTF-8 cannot encode one), spaces collapsed, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _require_text(text: str) -> str:
    if not text.strip():
        raise ExtractionFailed("the document has no text")
    return text


class TextExtractor(ABC):
    @abstractmethod
    def extract(self, data: bytes, media_type: str) -> str:
        """The document's text; raises ExtractionFailed when there is none to be had."""


class PlainTextExtractor(TextExtractor):
    """Text and Markdown, taken as they are (Markdown is readable as text); UTF-8 unless the
    media type names another charset."""

    def extract(self, data: bytes, media_type: str) -> str:
        base = base_media_type(media_type)
        if base not in TEXT_TYPES:
            raise ExtractionFailed(f"no text extractor for media type {base!r}")
        charset = charset_of(media_type) or "utf-8"
        try:
            codecs.lookup(charset)
        except LookupError:
            raise ExtractionFailed(f"unknown charset {charset!r}") from None
        try:
            text = data.decode("utf-8-sig" if charset in {"utf-8", "utf8"} else charset)
        except UnicodeDecodeError as exc:
            raise ExtractionFailed(
                f"not {charset.upper()} text: byte {exc.start} is invalid"
            ) from None
        return _require_text(text)


class HtmlExtractor(TextExtractor):
    """The text a browser would show: scripts, styles and the head dropped, blocks on lines of
    their own. Python's own parser (not lxml), so the output does not depend on what else is
    installed; the charset comes from the media type, else the document, else detection."""

    def extract(self, data: bytes, media_type: str) -> str:
        try:
            soup = BeautifulSoup(data, "html.parser", from_encoding=charset_of(media_type))
        except ParserRejectedMarkup as exc:
            raise ExtractionFailed(f"unreadable HTML: {exc}") from None
        for element in soup.find_all(INVISIBLE):
            element.decompose()
        for element in soup.find_all(sorted(BLOCKS)):
            element.insert_after(NavigableString("\n\n"))
        return _require_text(soup.get_text())


class PdfExtractor(TextExtractor):
    """The text layer of each page, pages separated by a blank line. A PDF without one (scanned
    images) or one that cannot be opened fails with the reason."""

    def extract(self, data: bytes, media_type: str) -> str:
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractionFailed("the PDF is encrypted with a password")
            pages = [page.extract_text() or "" for page in reader.pages]
        except ExtractionFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any parser error on untrusted bytes is a reason
            # pypdf raises its own errors and, on malformed files, plain ValueError, KeyError,
            # TypeError...: each means this document has no text, never that the view must stop.
            raise ExtractionFailed(f"unreadable PDF: {type(exc).__name__}: {exc}") from None
        if not any(page.strip() for page in pages):
            raise ExtractionFailed("the PDF has no text layer (scanned pages need OCR)")
        return "\n\n".join(pages)


class DocumentExtractor(TextExtractor):
    """Every supported media type, by the type a document was recorded with."""

    def __init__(self) -> None:
        text, html, pdf = PlainTextExtractor(), HtmlExtractor(), PdfExtractor()
        self._by_type: dict[str, TextExtractor] = {
            PLAIN: text,
            MARKDOWN: text,
            HTML: html,
            PDF: pdf,
        }

    def extract(self, data: bytes, media_type: str) -> str:
        extractor = self._by_type.get(base_media_type(media_type))
        if extractor is None:
            raise ExtractionFailed(f"no text extractor for media type {media_type!r}")
        return _require_text(tidy(extractor.extract(data, media_type)))
