"""Export the log to JSON Lines and import it back, idempotently, by event id.

The file format (version 1), one JSON object per line, UTF-8, gzip when the name ends in .gz:

- line 1, the header: ``{"janus_export": 1, "source_node", "app", "after_position",
  "upto_position", "head", "exported_at"}``: the events are those at positions in
  (after_position, upto_position] of the source node's log;
- one line per event, in log order: ``{"position", "event_id", "originator_id",
  "originator_version", "topic", "crc32", "state"}``. ``state`` comes last and is the stored
  event body byte for byte, a JSON object as the store holds it (``"state_base64"`` instead
  when the body is not JSON text, as with a compressed or encrypted store); ``crc32`` is the
  CRC-32 of the line's bytes before ``,"crc32":`` followed by the body's bytes, so it covers
  the position, the ids, the version, the topic and the body;
- the last line, the trailer: ``{"janus_export_end": 1, "events", "last_position"}``. A file
  without it was cut short.

Import writes events in file order, a batch per transaction. An event whose id is already in the
store is skipped, so importing the same file twice adds nothing. The first corrupt line stops the
import with its line number; every line before it is written and nothing from it on.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent
from eventsourcing.utils import resolve_topic

from replay.audit import ProgressFn, Store, UnreadableEvent

FORMAT_VERSION = 1
BATCH = 1_000
META = b'"_type_":"janus_meta"'
EVENT_ID = re.compile(rb'"_type_":"janus_meta","_data_":\{"event_id":"([0-9a-f]{32})"')
STATE_KEY = b',"state":'
CRC_KEY = b',"crc32":'
EVENT_KEYS = ("position", "event_id", "originator_id", "originator_version", "topic", "crc32")


class ExchangeError(Exception):
    """A file that cannot be exported to or imported from; names the line when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"the number {token} is out of range (no JSON number may be non-finite)")
    return value


def _non_finite(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _loads(raw: bytes) -> Any:
    """Strict JSON: Python's parser would take NaN, Infinity and 1e400 (as inf), which no
    event ever holds and a view or an export could not store or write back."""
    return json.loads(raw, parse_float=_finite, parse_constant=_non_finite)


def _no_progress(_: int) -> None:
    return None


def _open_write(path: Path, compress: bool) -> IO[bytes]:
    if compress:
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=5))
    return path.open("wb", buffering=1 << 20)


def _open_read(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


# -- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    path: Path
    events: int
    after_position: int
    upto_position: int
    last_position: int

    def json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "events": self.events,
            "after_position": self.after_position,
            "upto_position": self.upto_position,
            "last_position": self.last_position,
        }


def event_id_of(store: Store, notification: Notification) -> str:
    """The event's id, read from its stored body without decoding it when that is unambiguous."""
    state = notification.state
    if state.count(META) == 1:
        found = EVENT_ID.search(state)
        if found is not None:
            h = found.group(1).decode()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return str(store.decode(notification).event.meta.event_id)


def checksum(identity: bytes, state: bytes) -> int:
    """CRC-32 of a line's identity (its bytes before ``,"crc32":``) and then its body."""
    return zlib.crc32(state, zlib.crc32(identity))


_TOPICS: dict[str, str] = {}


def _event_line(store: Store, notification: Notification) -> bytes:
    state = notification.state
    topic = _TOPICS.get(notification.topic)
    if topic is None:
        topic = _TOPICS.setdefault(notification.topic, json.dumps(notification.topic))
    identity = (
        f'{{"position":{notification.id},"event_id":"{event_id_of(store, notification)}",'
        f'"originator_id":"{notification.originator_id}",'
        f'"originator_version":{notification.originator_version},"topic":{topic}'
    ).encode()
    crc = b',"crc32":%d,' % checksum(identity, state)
    if _is_json_object(state):
        return b"".join((identity, crc, b'"state":', state, b"}\n"))
    return b"".join((identity, crc, b'"state_base64":"', base64.b64encode(state), b'"}\n'))


def _is_json_object(state: bytes) -> bool:
    """Stored bodies are compact JSON objects (no raw newline can occur in one)."""
    return state.startswith(b"{") and state.endswith(b"}") and b"\n" not in state


def export_events(
    store: Store,
    path: Path,
    after: int = 0,
    upto: int | None = None,
    progress: ProgressFn = _no_progress,
) -> Exported:
    """Write events in (after, upto] to ``path``; the file appears only once it is complete."""
    head = store.head()
    upto = head if upto is None else min(upto, head)
    partial = path.with_name(path.name + ".partial")
    header = {
        "janus_export": FORMAT_VERSION,
        "source_node": store.settings.node_id,
        "app": store.settings.app_name,
        "after_position": after,
        "upto_position": upto,
        "head": head,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    count, last = 0, after
    try:
        with _open_write(partial, path.name.endswith(".gz")) as out:
            out.write(json.dumps(header).encode() + b"\n")
            for batch in store.pages(after, upto, progress=progress):
                out.write(b"".join(_event_line(store, n) for n in batch))
                count += len(batch)
                last = batch[-1].id
            trailer = {"janus_export_end": FORMAT_VERSION, "events": count, "last_position": last}
            out.write(json.dumps(trailer).encode() + b"\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Exported(path, count, after, upto, last)


# -- import ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    source_node: str
    app: str
    after_position: int
    upto_position: int
    head: int
    exported_at: str


@dataclass(frozen=True)
class Imported:
    path: Path
    header: Header
    events: int
    written: int
    skipped: int
    checked_only: bool

    def json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "source_node": self.header.source_node,
            "after_position": self.header.after_position,
            "upto_position": self.header.upto_position,
            "events": self.events,
            "written": self.written,
            "already_present": self.skipped,
            "checked_only": self.checked_only,
        }


@dataclass(frozen=True)
class _Line:
    number: int
    event_id: str
    stored: StoredEvent


def _header(raw: bytes) -> Header:
    try:
        data = _loads(raw)
        if data.get("janus_export") != FORMAT_VERSION:
            raise ExchangeError(
                f"not a Janus export (format {FORMAT_VERSION} header expected)", line=1
            )
        return Header(
            source_node=str(data["source_node"]),
            app=str(data["app"]),
            after_position=int(data["after_position"]),
            upto_position=int(data["upto_position"]),
            head=int(data["head"]),
            exported_at=str(data["exported_at"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ExchangeError(f"not a Janus export header ({error})", line=1) from None


class _Checker:
    """Everything a line must be before it may be written: complete, intact, decodable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.last_version: dict[UUID, int] = {}
        self.last_position = -1

    def line(self, number: int, raw: bytes) -> _Line:
        try:
            data = _loads(raw)
        except ValueError as error:
            raise ExchangeError(f"not JSON ({error})", number) from None
        if not isinstance(data, dict):
            raise ExchangeError("not a JSON object", number)
        missing = [k for k in EVENT_KEYS if k not in data]
        if missing or ("state" not in data and "state_base64" not in data):
            raise ExchangeError(f"missing {', '.join(missing) or 'state'}", number)
        try:
            state = self._state(data, raw)
            position = int(data["position"])
            originator = UUID(str(data["originator_id"]))
            version = int(data["originator_version"])
            event_id = str(UUID(str(data["event_id"])))
            topic = str(data["topic"])
            crc = int(data["crc32"])
        except (ValueError, TypeError) as error:
            raise ExchangeError(f"malformed field ({error})", number) from None
        identity = raw[: raw.find(CRC_KEY)]
        if checksum(identity, state) != crc:
            raise ExchangeError("checksum mismatch: the event was altered", number)
        if position <= self.last_position:
            raise ExchangeError(f"position {position} is not after {self.last_position}", number)
        self.last_position = position
        stored = StoredEvent(originator, version, topic, state)
        self._decodes(number, position, stored, event_id)
        self._follows(number, originator, version)
        return _Line(number, event_id, stored)

    @staticmethod
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

    def _decodes(self, number: int, position: int, stored: StoredEvent, event_id: str) -> None:
        try:
            resolve_topic(stored.topic)
            event: Any = self.store.app.mapper.to_domain_event(stored)
        except Exception as error:  # any failure to decode makes the line unusable
            raise ExchangeError(f"event cannot be decoded ({error})", number) from error
        found = str(getattr(getattr(event, "meta", None), "event_id", ""))
        if found != event_id:
            raise ExchangeError(f"event_id {event_id} does not match the body ({found})", number)

    def _follows(self, number: int, originator: UUID, version: int) -> None:
        """An aggregate's events must continue its history: no holes, here or in the store."""
        previous = self.last_version.get(originator)
        if previous is not None and version != previous + 1:
            raise ExchangeError(
                f"aggregate {originator} version {version} does not follow version {previous} "
                "earlier in the file",
                number,
            )
        if previous is None and version > 1:
            previous = min(self.store.table.version_at(originator, 2**62), version - 1)
        if version > (previous or 0) + 1:
            raise ExchangeError(
                f"aggregate {originator} version {version} follows nothing: version "
                f"{version - 1} is neither earlier in the file nor in the store",
                number,
            )
        self.last_version[originator] = version


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with _open_read(path) as stream:
            yield from enumerate(stream, start=1)
    except (OSError, EOFError, zlib.error) as error:
        raise ExchangeError(f"{path} is damaged or unreadable: {error}") from None


class _Writer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.written = 0
        self.skipped = 0

    def flush(self, lines: list[_Line]) -> None:
        """One transaction for the batch; if some are already there, find which and skip them."""
        if not lines:
            return
        recorder = self.store.app.recorder
        try:
            recorder.insert_events([line.stored for line in lines])
        except IntegrityError:
            fresh = self._fresh(lines)
            try:
                recorder.insert_events([line.stored for line in fresh])
            except IntegrityError:
                raise ExchangeError(
                    "another writer appended to the same aggregates during the import; "
                    f"lines from {fresh[0].number} on were not written: import again"
                ) from None
            self.written += len(fresh)
            self.skipped += len(lines) - len(fresh)
            return
        self.written += len(lines)

    def _fresh(self, lines: list[_Line]) -> list[_Line]:
        fresh: list[_Line] = []
        for line in lines:
            stored = line.stored
            existing = self.store.app.recorder.select_events(
                stored.originator_id,
                gt=stored.originator_version - 1,
                lte=stored.originator_version,
            )
            if not existing:
                fresh.append(line)
                continue
            there = self._event_id(existing[0])
            if there != line.event_id:
                # Write what came before this line, then stop here.
                if fresh:
                    self.store.app.recorder.insert_events([f.stored for f in fresh])
                    self.written += len(fresh)
                raise ExchangeError(
                    f"aggregate {stored.originator_id} version {stored.originator_version} "
                    f"already holds another event ({there}, not {line.event_id})",
                    line.number,
                )
        return fresh

    def _event_id(self, stored: StoredEvent) -> str:
        notification = Notification(
            id=0,
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=stored.state,
        )
        try:
            return event_id_of(self.store, notification)
        except UnreadableEvent:
            return "an unreadable event"


def import_events(
    store: Store,
    path: Path,
    progress: ProgressFn = _no_progress,
    check_only: bool = False,
    batch: int = BATCH,
) -> Imported:
    """Append the file's events that the store does not hold yet, in file order."""
    if not path.is_file():
        raise ExchangeError(f"{path}: no such file")
    run = _Import(store, check_only, batch)
    for number, raw in _lines(path):
        try:
            run.feed(number, raw)
        except ExchangeError:
            # Every line before the bad one is whole and checked: write those, nothing after.
            run.flush()
            raise
        progress(1)
    run.flush()
    if run.header is None:
        raise ExchangeError(f"{path} is empty")
    if not run.ended:
        raise ExchangeError(
            f"{path} ends without its trailer: the file was cut short after {run.events} events "
            "(those were written; import the complete file to add the rest)"
        )
    return Imported(
        path, run.header, run.events, run.writer.written, run.writer.skipped, check_only
    )


class _Import:
    def __init__(self, store: Store, check_only: bool, batch: int) -> None:
        self.checker = _Checker(store)
        self.writer = _Writer(store)
        self.check_only = check_only
        self.batch = batch
        self.header: Header | None = None
        self.pending: list[_Line] = []
        self.events = 0
        self.ended = False

    def feed(self, number: int, raw: bytes) -> None:
        if self.header is None:
            self.header = _header(raw)
            return
        if self.ended:
            raise ExchangeError("content after the end of the export", number)
        if raw.startswith(b'{"janus_export_end"'):
            _trailer(raw, number, self.events)
            self.ended = True
            return
        self.pending.append(self.checker.line(number, raw))
        self.events += 1
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        if not self.check_only:
            self.writer.flush(lines)


def _trailer(raw: bytes, number: int, events: int) -> None:
    try:
        data = _loads(raw)
        count = int(data["events"])
    except (ValueError, KeyError, TypeError) as error:
        raise ExchangeError(f"malformed trailer ({error})", number) from None
    if count != events:
        raise ExchangeError(f"the trailer counts {count} events, the file holds {events}", number)
