"""The export file format: writing its lines, and reading them back with every check a file alone
allows (complete, intact, in order, signed), before anything is written to a store.

Format 2 (format 1 files are still read, without the chain of positions), one JSON object per
line, UTF-8, gzip when the name ends in .gz:

- line 1, the header: ``{"janus_export": 2, "source_node", "app", "after_position",
  "upto_position", "head", "exported_at"}``;
- one line per event, in log order: ``{"position", "after", "event_id", "originator_id",
  "originator_version", "topic", "crc32", "state"}``. ``after`` is the position of the event
  before it in the file (the header's ``after_position`` for the first), so a deleted line is
  named at the line after it, while the source's holes (positions no event holds) stay visible.
  ``state`` comes last and is the stored body byte for byte (``"state_base64"`` when it is not
  JSON text); ``crc32`` covers the line's bytes before ``,"crc32":`` and then the body;
- the last line, the trailer: ``{"janus_export_end": 2, "events", "last_position"}`` and, when
  the exporting store has ``JANUS_EXPORT_HMAC_KEY``, ``"hmac_sha256"``: HMAC-SHA256 of every byte
  before the trailer (uncompressed), so a signed file cannot be altered, cut or extended
  unnoticed by anyone without the key.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic

from replay.store import Store

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
STATE_KEY = b',"state":'
CRC_KEY = b',"crc32":'
TRAILER = b'{"janus_export_end"'
EVENT_KEYS = ("position", "event_id", "originator_id", "originator_version", "topic", "crc32")
MIN_KEY_BYTES = 16
MAX_HEADER_TEXT = 200  # what the import's record can hold


class ExchangeError(Exception):
    """A file that cannot be exported to or imported from; names the line when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


def checksum(identity: bytes, state: bytes) -> int:
    """CRC-32 of a line's identity (its bytes before ``,"crc32":``) and then its body."""
    return zlib.crc32(state, zlib.crc32(identity))


def signing_key(store: Store) -> bytes | None:
    """The configured HMAC key, if any; it is never printed, logged or stored."""
    secret = store.settings.export_hmac_key
    if secret is None:
        return None
    key = secret.get_secret_value().encode()
    if len(key) < MIN_KEY_BYTES:
        raise ExchangeError(f"JANUS_EXPORT_HMAC_KEY must be at least {MIN_KEY_BYTES} bytes long")
    return key


def new_mac(key: bytes | None) -> hmac.HMAC | None:
    return hmac.new(key, digestmod=hashlib.sha256) if key is not None else None


# -- strict JSON -------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def strict_json(raw: bytes) -> Any:
    """JSON as the standard defines it: no NaN, no Infinity, no number that overflows."""
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)


# -- lines ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    format: int
    source_node: str
    app: str
    after_position: int
    upto_position: int
    head: int
    exported_at: str


@dataclass(frozen=True)
class Line:
    number: int
    position: int
    after: int | None
    event_id: str
    stored: StoredEvent

    @property
    def key(self) -> tuple[UUID, int]:
        return UUID(str(self.stored.originator_id)), self.stored.originator_version


def event_line(identity: bytes, state: bytes) -> bytes:
    crc = b',"crc32":%d,' % checksum(identity, state)
    if state.startswith(b"{") and state.endswith(b"}") and b"\n" not in state:
        return b"".join((identity, crc, b'"state":', state, b"}\n"))
    return b"".join((identity, crc, b'"state_base64":"', base64.b64encode(state), b'"}\n'))


def parse_header(raw: bytes) -> Header:
    try:
        data = strict_json(raw)
        if not isinstance(data, dict) or data.get("janus_export") not in READABLE_FORMATS:
            raise ExchangeError("not a Janus export (a format 1 or 2 header expected)", line=1)
        for name in ("source_node", "app", "exported_at"):
            if not 0 < len(str(data[name])) <= MAX_HEADER_TEXT:
                raise ValueError(f"{name} must be 1 to {MAX_HEADER_TEXT} characters")
        return Header(
            format=int(data["janus_export"]),
            source_node=str(data["source_node"]),
            app=str(data["app"]),
            after_position=int(data["after_position"]),
            upto_position=int(data["upto_position"]),
            head=int(data["head"]),
            exported_at=str(data["exported_at"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ExchangeError(f"not a Janus export header ({error})", line=1) from None


def parse_line(store: Store, number: int, raw: bytes, chained: bool, decode: bool = True) -> Line:
    """One event line, checked alone: JSON, fields, checksum, decodable, event id."""
    try:
        data = strict_json(raw)
    except ValueError as error:
        raise ExchangeError(f"not JSON ({error})", number) from None
    if not isinstance(data, dict):
        raise ExchangeError("not a JSON object", number)
    missing = [k for k in (*EVENT_KEYS, *(("after",) if chained else ())) if k not in data]
    if missing or ("state" not in data and "state_base64" not in data):
        raise ExchangeError(f"missing {', '.join(missing) or 'state'}", number)
    try:
        state = _state(data, raw)
        stored = StoredEvent(
            UUID(str(data["originator_id"])),
            int(data["originator_version"]),
            str(data["topic"]),
            state,
        )
        position, event_id = int(data["position"]), str(UUID(str(data["event_id"])))
        after, crc = (int(data["after"]) if chained else None), int(data["crc32"])
    except (ValueError, TypeError) as error:
        raise ExchangeError(f"malformed field ({error})", number) from None
    if checksum(raw[: raw.find(CRC_KEY)], state) != crc:
        raise ExchangeError("checksum mismatch: the event was altered", number)
    if stored.originator_version < 1 or position < 1:
        raise ExchangeError("versions and positions start at 1", number)
    if decode:
        _decodes(store, number, stored, event_id)
    return Line(number, position, after, event_id, stored)


def _state(data: dict[str, Any], raw: bytes) -> bytes:
    """The body byte for byte: the raw text of the last field, which ``state`` is."""
    if "state" in data:
        if not isinstance(data["state"], dict):
            raise TypeError("state is not a JSON object")
        line = raw.rstrip(b"\r\n")
        start = line.find(STATE_KEY)
        if start < 0 or not line.endswith(b"}"):
            raise ValueError("state is not the last field")
        return line[start + len(STATE_KEY) : -1]
    return base64.b64decode(str(data["state_base64"]), validate=True)


def _decodes(store: Store, number: int, stored: StoredEvent, event_id: str) -> None:
    try:
        resolve_topic(stored.topic)
        event: Any = store.app.mapper.to_domain_event(stored)
    except Exception as error:  # any failure to decode makes the line unusable
        raise ExchangeError(f"event cannot be decoded ({error})", number) from error
    found = str(getattr(getattr(event, "meta", None), "event_id", ""))
    if found != event_id:
        raise ExchangeError(f"event_id {event_id} does not match the body ({found})", number)


# -- reading a whole file ------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """Passes the file's bytes through while hashing them: the digest of the file as stored."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        return len(data)


class FileReader:
    """Yields a file's event lines in order, checking everything the file alone can tell.

    Memory holds one line and one integer per aggregate (its last version in the file), never
    the file. After the last line: ``sha256`` (of the file as stored), ``signed`` and ``note``.
    """

    def __init__(self, store: Store, path: Path, key: bytes | None, decode: bool = True) -> None:
        self.store = store
        # The write pass re-reads a file the check pass decoded; the unchanged digest proves it.
        self.decode = decode
        self.path = path
        self.key = key
        self.header: Header | None = None
        self.events = 0
        self.sha256 = ""
        self.signed = False
        self.note = "unsigned"

    def lines(self) -> Iterator[Line]:
        if not self.path.is_file():
            raise ExchangeError(f"{self.path}: no such file")
        with self.path.open("rb") as raw:
            hashing = _Hashing(raw)
            buffered = io.BufferedReader(hashing, 1 << 20)
            stream: IO[bytes] = buffered
            if self.path.name.endswith(".gz"):
                stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
            yield from self._checked(self._numbered(stream))
            buffered.read()  # whatever follows the content still belongs to the digest
            self.sha256 = hashing.digest.hexdigest()

    def _numbered(self, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        number = 0
        try:
            for number, raw in enumerate(stream, start=1):
                if not raw.endswith(b"\n"):
                    raise ExchangeError("the line is cut short: the file was truncated", number)
                yield number, raw
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            where = f"after line {number}" if number else "before its first line"
            raise ExchangeError(
                f"the compressed file is damaged or truncated {where} ({error})", number + 1
            ) from None
        except OSError as error:
            raise ExchangeError(f"{self.path} is unreadable: {error}") from None

    def _checked(self, numbered: Iterator[tuple[int, bytes]]) -> Iterator[Line]:
        mac = new_mac(self.key)
        order = _Order()
        trailer: tuple[int, dict[str, Any]] | None = None
        for number, raw in numbered:
            if trailer is not None:
                raise ExchangeError("content after the end of the export", number)
            if self.header is None:
                self.header = parse_header(raw)
                order.last_position = self.header.after_position
            elif raw.startswith(TRAILER):
                trailer = (number, _trailer(raw, number))
                continue
            else:
                chained = self.header.format >= 2
                line = parse_line(self.store, number, raw, chained, self.decode)
                order.check(line)
                self.events += 1
                yield line
            if mac is not None:
                mac.update(raw)
        if self.header is None:
            raise ExchangeError(f"{self.path} is empty")
        if trailer is None:
            raise ExchangeError(
                f"{self.path} ends without its trailer: the file was cut short after "
                f"{self.events} events (nothing was written)"
            )
        self._end(*trailer, order.last_position, mac)

    def _end(self, number: int, data: dict[str, Any], last: int, mac: hmac.HMAC | None) -> None:
        count = int(data["events"])
        if count != self.events:
            raise ExchangeError(
                f"the trailer counts {count} events, the file holds {self.events}: "
                "lines are missing or were added",
                number,
            )
        if self.events and int(data.get("last_position", last)) != last:
            raise ExchangeError(f"the trailer ends at {data['last_position']}, not {last}", number)
        signature = data.get("hmac_sha256")
        if signature is None:
            return
        if mac is None:
            self.note = "signed, not verified (no JANUS_EXPORT_HMAC_KEY here)"
            return
        if not hmac.compare_digest(str(signature), mac.hexdigest()):
            raise ExchangeError(
                "the signature does not match: the file was altered, or signed with another key",
                number,
            )
        self.signed, self.note = True, "signature verified"


class _Order:
    """Positions strictly increasing and chained; each aggregate's versions contiguous."""

    def __init__(self) -> None:
        self.last_position = 0
        self.versions: dict[UUID, int] = {}
        self.previous_line = 0

    def check(self, line: Line) -> None:
        number, position = line.number, line.position
        if position <= self.last_position:
            raise ExchangeError(
                f"position {position} is not after position {self.last_position} "
                f"(line {self.previous_line}): lines {self.previous_line} and {number} are out "
                "of order",
                number,
            )
        if line.after is not None and line.after != self.last_position:
            raise ExchangeError(
                f"the event before this one is at position {line.after}, but the line before "
                f"holds position {self.last_position}: a line is missing or out of order "
                f"before line {number}",
                number,
            )
        originator, version = line.key
        previous = self.versions.get(originator)
        if previous is not None and version != previous + 1:
            raise ExchangeError(
                f"aggregate {originator} version {version} does not follow version {previous} "
                f"earlier in the file: version {previous + 1} is missing or out of order",
                number,
            )
        self.versions[originator] = version
        self.last_position, self.previous_line = position, number


def _trailer(raw: bytes, number: int) -> dict[str, Any]:
    try:
        data = strict_json(raw)
        int(data["events"])
    except (ValueError, KeyError, TypeError) as error:
        raise ExchangeError(f"malformed trailer ({error})", number) from None
    if not isinstance(data, dict):
        raise ExchangeError("malformed trailer", number)
    return data
