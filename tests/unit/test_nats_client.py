"""The cheaper header parser reads every header block exactly as nats-py's own does."""

from __future__ import annotations

from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from event_store import messages as wire
from event_store.nats_client import FastHeadersClient, parse_header_lines

# Bytes that make header lines interesting: separators, every kind of whitespace str.isspace
# knows (including \x1c-\x1f, which bytes.strip keeps), non-ASCII and broken UTF-8.
PIECES = [
    b"\r\n",
    b":",
    b": ",
    b" ",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\x1f",
    b"\x85",
    b"\xc3\xa9",
    b"\xff",
    b"Nats-Msg-Id",
    b"Janus-Topic",
    b"a",
    b"Z9",
    b"-",
]
header_blocks = st.lists(st.sampled_from(PIECES) | st.binary(max_size=4), max_size=40).map(b"".join)


@settings(max_examples=2_000, deadline=None)
@given(header_blocks)
def test_any_header_block_parses_as_the_library_parses_it(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_a_janus_event_s_headers_parse_as_the_library_parses_them() -> None:
    headers = {
        wire.H_TOPIC: "domain.goal:Goal.Submitted",
        wire.H_AGGREGATE_ID: str(uuid4()),
        wire.H_AGGREGATE_VERSION: "1",
        wire.H_MSG_ID: str(uuid4()),
        wire.H_CORRELATION_ID: "corrélation: with a colon",
        "Nats-Stream-Source": "janus-edge-n1:2a1b9c 17 > >",
    }
    raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"

    assert parse_header_lines(raw) == Client._parse_header_lines(raw) == headers


def test_the_client_parses_deliveries_with_it() -> None:
    raw = b"Name: value\r\nBad Name: x\r\n"
    assert FastHeadersClient._parse_header_lines(raw) == {"Name": "value"}
    assert FastHeadersClient._parse_header_lines is parse_header_lines
