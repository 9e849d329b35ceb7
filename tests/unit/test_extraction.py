"""Text out of each supported media type, deterministically; unreadable input fails, with why."""

from __future__ import annotations

import pytest

from adapters.extraction import (
    SUPPORTED_MEDIA_TYPES,
    DocumentExtractor,
    ExtractionFailed,
    media_type_for,
    tidy,
)
from tests.support.documents import HTML_PAGE, MARKDOWN_NOTE, pdf_bytes

extractor = DocumentExtractor()


def test_a_real_pdf_gives_the_text_of_every_page_in_order() -> None:
    data = pdf_bytes("The boiler manual.", "Bleed the radiators in autumn.")

    text = extractor.extract(data, "application/pdf")

    assert "The boiler manual." in text
    assert "Bleed the radiators in autumn." in text
    assert text.index("boiler") < text.index("radiators")
    assert extractor.extract(data, "application/pdf") == text


def test_html_gives_only_the_visible_text_with_blocks_on_their_own_lines() -> None:
    text = extractor.extract(HTML_PAGE, "text/html; charset=utf-8")

    assert text.splitlines() == [
        "Door policy",
        "",
        "Lock the front door at night.",
        "",
        "back door",
        "",
        "garage",
    ]
    for hidden in ("secret", "color", "Tab title", "comment", "enable scripts"):
        assert hidden not in text


def test_markdown_and_text_are_taken_as_they_are() -> None:
    assert extractor.extract(MARKDOWN_NOTE.encode(), "text/markdown") == MARKDOWN_NOTE.strip()
    assert extractor.extract(b"\xef\xbb\xbfhello\r\nworld", "text/plain") == "hello\nworld"
    latin = "caf\xe9".encode("latin-1")
    assert extractor.extract(latin, "text/plain; charset=latin-1") == "caf\xe9"


@pytest.mark.parametrize(
    ("data", "media_type", "reason"),
    [
        (b"%PDF-1.7\n1 0 obj garbage", "application/pdf", "PDF"),
        (pdf_bytes("complete")[:200], "application/pdf", "PDF"),
        (b"not a pdf at all", "application/pdf", "PDF"),
        (pdf_bytes("   "), "application/pdf", "no text layer"),
        (b"\xff\xfe\xfa", "text/plain", "not UTF-8"),
        (b"   \n\t", "text/markdown", "no text"),
        (b"<html><script>only code</script></html>", "text/html", "no text"),
        (b"x", "text/plain; charset=klingon", "unknown charset"),
        (b"GIF89a", "image/gif", "no text extractor"),
    ],
)
def test_unreadable_input_fails_with_a_reason(data: bytes, media_type: str, reason: str) -> None:
    with pytest.raises(ExtractionFailed) as failed:
        extractor.extract(data, media_type)
    assert reason in failed.value.reason


def test_output_has_no_character_a_store_refuses() -> None:
    # NUL (Postgres text refuses it) is dropped; a lone surrogate (no UTF-8 for it) is replaced.
    assert extractor.extract(b"a\x00b", "text/plain") == "ab"
    assert tidy("x \ud800 y") == "x ? y"
    assert tidy("a  \t b\r\n\n\n\nc  ") == "a b\n\nc"


@pytest.mark.parametrize(
    ("declared", "filename", "expected"),
    [
        ("application/pdf", "x.txt", "application/pdf"),
        ("Text/HTML; Charset=UTF-8", None, "text/html; charset=utf-8"),
        ("text/x-markdown", None, "text/markdown"),
        ("application/octet-stream", "notes/plants.MD", "text/markdown"),
        (None, "page.htm", "text/html"),
        ("", "scan.pdf", "application/pdf"),
        (None, "photo.jpg", None),
        (None, None, None),
        ("image/png", "x.md", "image/png"),
    ],
)
def test_the_media_type_is_the_declared_one_else_the_suffix(
    declared: str | None, filename: str | None, expected: str | None
) -> None:
    assert media_type_for(declared, filename) == expected


def test_every_supported_type_has_an_extractor() -> None:
    for media_type in SUPPORTED_MEDIA_TYPES:
        with pytest.raises(ExtractionFailed) as failed:
            extractor.extract(b"", media_type)
        assert "no text extractor" not in failed.value.reason
