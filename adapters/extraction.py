"""Text extraction port: a stored blob's bytes and media type in, plain text out.

Extraction is deterministic (same bytes, same text), so projections compute it and a rebuild
recomputes it. A blob whose text cannot be extracted raises `ExtractionFailed` with a reason the
views record; it never stalls a projection for other documents.

Only plain text lives here yet; PDF (pypdf) and HTML (BeautifulSoup) extractors join with the
ingestion pipeline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["ExtractionFailed", "PlainTextExtractor", "TextExtractor"]

TEXT_TYPES = {"text/plain", "text/markdown", "text/x-markdown"}


class ExtractionFailed(Exception):
    """The document's content yields no text; `reason` is shown in the views' status."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TextExtractor(ABC):
    @abstractmethod
    def extract(self, data: bytes, media_type: str) -> str:
        """The document's text; raises ExtractionFailed when there is none to be had."""


class PlainTextExtractor(TextExtractor):
    """UTF-8 text and Markdown, taken as they are (Markdown is readable as text)."""

    def extract(self, data: bytes, media_type: str) -> str:
        base = media_type.split(";", 1)[0].strip().lower()
        if base not in TEXT_TYPES:
            raise ExtractionFailed(f"no text extractor for media type {base!r}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExtractionFailed(f"not UTF-8 text: byte {exc.start} is invalid") from None
        if not text.strip():
            raise ExtractionFailed("the document has no text")
        return text
