"""Export the log to a file and import it back: checked whole first, then written all at once.

The file format is in ``replay/exchange_file.py``. An import makes two passes over the file:

1. **check**: every line is parsed and checked (JSON, checksum, decodable, positions in order
   and chained, each aggregate's versions contiguous, the trailer's count, the signature), and
   compared with the store in batches: a line whose (aggregate, version) the store holds must be
   byte for byte the same event ("already present"), else it is a conflict; the first line of an
   aggregate must follow the store's last version of it. Problems with the store are collected
   per line. Nothing is written if any line has one.
2. **write**: one transaction under the append lock re-reads the file (its digest must not have
   changed), inserts the new events and records an ``ImportLog.Recorded`` event (who, when, file,
   sha256, counts, source node, signed or not, the positions written), then commits once.

The trust model: into an **empty store** an import is a restore: every event is accepted and
keeps its position (holes included). Into a **non-empty store** an import adds only aggregates
the store does not hold; a line that would change an existing aggregate (a forged
``Confirmation.Granted`` for a pending confirmation), or add one that would act or authorize
here (a job, an API key, an idempotency record: ``ACTS_HERE``), is refused, unless the file's
signature is verified with this store's key and the operator passes ``extend``. Whatever is
imported is history: the executor never acts on a grant at an imported position
(``domain/imports.py``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification
from eventsourcing.utils import get_topic

from domain.api_key import ApiKey
from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.imports import IMPORT_LOG_ID, ImportLog, ImportMode
from domain.job import Job
from domain.meta import Actor, ActorKind, CommandContext
from event_store.bulk_sql import EventsSql, Key
from replay.exchange_file import (
    FORMAT_VERSION,
    ExchangeError,
    FileReader,
    Header,
    Line,
    event_line,
    new_mac,
    signing_key,
)
from replay.store import ProgressFn, Store

__all__ = ["ExchangeError", "ImportRefused", "export_events", "import_events"]

BATCH = 500
META = b'"_type_":"janus_meta"'
EVENT_ID = re.compile(rb'"_type_":"janus_meta","_data_":\{"event_id":"([0-9a-f]{32})"')
GRANTED_TOPIC = get_topic(Confirmation.Granted)
# New aggregates that would make this store act or authorize, not only remember.
ACTS_HERE = (
    (get_topic(Job) + ".", "the scheduler here would run"),
    (get_topic(ApiKey) + ".", "would let its holder into the API here"),
    (get_topic(CommandRecord) + ".", "would answer a later command's idempotency key here"),
)
SHOWN_PROBLEMS = 5


class ImportRefused(ExchangeError):
    """Lines the store cannot take as they are; nothing was written."""

    def __init__(self, problems: list[tuple[int, str]], more: int = 0) -> None:
        self.problems = problems
        shown = "; ".join(f"line {n}: {text}" for n, text in problems[:SHOWN_PROBLEMS])
        hidden = len(problems) - SHOWN_PROBLEMS + more
        tail = f"; and {hidden} more (--check --json lists them)" if hidden > 0 else ""
        count = len(problems) + more
        super().__init__(f"{count} line(s) refused, nothing was written: {shown}{tail}")


def _no_progress(_: int) -> None:
    return None


# -- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    path: Path
    events: int
    after_position: int
    upto_position: int
    last_position: int
    signed: bool

    def json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "events": self.events,
            "after_position": self.after_position,
            "upto_position": self.upto_position,
            "last_position": self.last_position,
            "signed": self.signed,
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


def _open_write(path: Path, compress: bool) -> IO[bytes]:
    if compress:
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=5))
    return path.open("wb", buffering=1 << 20)


def _identity(store: Store, n: Notification, after: int) -> bytes:
    return (
        f'{{"position":{n.id},"after":{after},"event_id":"{event_id_of(store, n)}",'
        f'"originator_id":"{n.originator_id}",'
        f'"originator_version":{n.originator_version},"topic":{json.dumps(n.topic)}'
    ).encode()


def export_events(
    store: Store,
    path: Path,
    after: int = 0,
    upto: int | None = None,
    progress: ProgressFn = _no_progress,
) -> Exported:
    """Write events in (after, upto] to ``path``; the file appears only once it is complete.

    Signed (HMAC-SHA256 in the trailer) when ``JANUS_EXPORT_HMAC_KEY`` is set.
    """
    mac = new_mac(signing_key(store))
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
            chunk = json.dumps(header).encode() + b"\n"
            for batch in store.pages(after, upto, progress=progress):
                lines = []
                for n in batch:
                    lines.append(event_line(_identity(store, n, last), n.state))
                    last = n.id
                chunk += b"".join(lines)
                if mac is not None:
                    mac.update(chunk)
                out.write(chunk)
                count += len(batch)
                chunk = b""
            if mac is not None:
                mac.update(chunk)
            trailer: dict[str, Any] = {
                "janus_export_end": FORMAT_VERSION,
                "events": count,
                "last_position": last,
            }
            if mac is not None:
                trailer["hmac_sha256"] = mac.hexdigest()
            out.write(chunk + json.dumps(trailer).encode() + b"\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Exported(path, count, after, upto, last, mac is not None)


# -- import: the result --------------------------------------------------------------------------


@dataclass
class Imported:
    path: Path
    header: Header
    mode: str
    events: int
    sha256: str
    signature: str
    written: int = 0
    skipped: int = 0
    ignored: int = 0
    grants: int = 0
    first_position: int = 0
    last_position: int = 0
    positions_kept: bool = False
    checked_only: bool = False
    problems: list[tuple[int, str]] = field(default_factory=list)
    more_problems: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "source_node": self.header.source_node,
            "after_position": self.header.after_position,
            "upto_position": self.header.upto_position,
            "mode": self.mode,
            "signature": self.signature,
            "events": self.events,
            "written": self.written,
            "already_present": self.skipped,
            "ignored": self.ignored,
            "grants_not_executed": self.grants,
            "positions": [self.first_position, self.last_position] if self.written else None,
            "positions_kept": self.positions_kept,
            "checked_only": self.checked_only,
            "problems": [{"line": n, "problem": text} for n, text in self.problems],
        }


# -- import: pass 1, the check -----------------------------------------------------------------


class _Check:
    """Compares the file's lines with the store, a batch at a time."""

    def __init__(self, sql: EventsSql, result: Imported, extend: bool) -> None:
        self.sql = sql
        self.result = result
        self.extend = extend
        self.append = result.mode == ImportMode.APPEND
        self.store_last: dict[UUID, int] = {}
        self._seen: set[UUID] = set()

    def batch(self, lines: list[Line]) -> None:
        fresh_ids = list({line.key[0] for line in lines} - self.store_last.keys())
        with self.sql.reading() as curs:
            there = self.sql.existing(curs, [line.key for line in lines])
            self.store_last.update(dict.fromkeys(fresh_ids, 0))
            self.store_last.update(self.sql.last_versions(curs, fresh_ids))
        for line in lines:
            self._line(line, there)

    def _line(self, line: Line, there: dict[Key, tuple[str, bytes]]) -> None:
        result = self.result
        originator, version = line.key
        if self.append and originator == IMPORT_LOG_ID:
            result.ignored += 1  # the source's own import records describe another store
            return
        first = self._first_in_file(line)
        held = there.get(line.key)
        if held is not None:
            if held == (line.stored.topic, line.stored.state):
                result.skipped += 1
            else:
                self._problem(line, _conflict(line, held))
            return
        last = self.store_last[originator]
        if first and version != last + 1:
            self._problem(
                line,
                f"aggregate {originator} version {version} follows nothing: version "
                f"{version - 1} is neither earlier in the file nor in the store",
            )
            return
        acts = _acts_here(line) if self.append and last == 0 and first else None
        if acts is not None and not self.extend:
            self._problem(
                line,
                f"would add {_type(line)} {originator}, which {acts}: such aggregates come "
                "into a non-empty store only from a signed file with --extend",
            )
            return
        if self.append and last > 0 and not self.extend:
            self._problem(
                line,
                f"would change {_type(line)} {originator}, which this store already holds "
                f"(version {version}): an import into a non-empty store only adds new "
                "aggregates (a signed file and --extend allow more)",
            )
            return
        result.written += 1
        result.grants += line.stored.topic == GRANTED_TOPIC

    def _first_in_file(self, line: Line) -> bool:
        # Within the file the reader already enforced contiguity; only the first line of an
        # aggregate has to meet the store's last version.
        originator = line.key[0]
        if originator in self._seen:
            return False
        self._seen.add(originator)
        return True

    def _problem(self, line: Line, text: str) -> None:
        if len(self.result.problems) < 1_000:
            self.result.problems.append((line.number, text))
        else:
            self.result.more_problems += 1


def _acts_here(line: Line) -> str | None:
    """Why a new aggregate of this kind would be more than history in this store."""
    topic = line.stored.topic
    return next((why for prefix, why in ACTS_HERE if topic.startswith(prefix)), None)


def _type(line: Line) -> str:
    return line.stored.topic.rsplit(":", 1)[-1].split(".", 1)[0]


def _conflict(line: Line, held: tuple[str, bytes]) -> str:
    originator, version = line.key
    return (
        f"conflict: aggregate {originator} version {version} is already in this store with "
        f"other contents ({held[0].rsplit(':', 1)[-1]}), not this line's event {line.event_id} "
        f"({line.stored.topic.rsplit(':', 1)[-1]})"
    )


def _batches(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check(
    store: Store, path: Path, key: bytes | None, extend: bool, progress: ProgressFn, batch: int
) -> Imported:
    sql = EventsSql(store.app)
    reader = FileReader(store, path, key)
    with sql.reading() as curs:
        mode = ImportMode.RESTORE if sql.head(curs) == 0 else ImportMode.APPEND
    lines = reader.lines()
    first = next(lines, None)  # the header is read with it (or the file ends with its trailer)
    result = Imported(path, cast(Header, reader.header), mode, 0, "", "")
    check = _Check(sql, result, extend)
    for chunk in _batches(_chain(first, lines), batch):
        check.batch(chunk)
        result.events += len(chunk)
        progress(len(chunk))
    result.header = cast(Header, reader.header)
    result.sha256, result.signature = reader.sha256, reader.note
    if extend and not reader.signed:
        raise ExchangeError(
            "--extend needs a file whose signature this store's JANUS_EXPORT_HMAC_KEY verifies "
            f"(this one: {reader.note})"
        )
    return result


def _chain(first: Line | None, rest: Iterator[Line]) -> Iterator[Line]:
    if first is not None:
        yield first
    yield from rest


# -- import: pass 2, the write -----------------------------------------------------------------


def _write(store: Store, plan: Imported, key: bytes | None, actor: Actor, batch: int) -> None:
    sql = EventsSql(store.app)
    reader = FileReader(store, plan.path, key, decode=False)
    first = last = count = 0
    with sql.writing() as curs:
        head = sql.head(curs)
        if plan.mode == ImportMode.RESTORE and head != 0:
            raise ExchangeError("the store received events since the check: import again")
        keep: bool | None = True if plan.mode == ImportMode.RESTORE else None
        position = head
        for chunk in _batches(reader.lines(), batch):
            there = sql.existing(curs, [line.key for line in chunk])
            rows = []
            for line in chunk:
                if plan.mode == ImportMode.APPEND and line.key[0] == IMPORT_LOG_ID:
                    continue
                held = there.get(line.key)
                if held is not None:
                    if held != (line.stored.topic, line.stored.state):
                        raise ImportRefused([(line.number, _conflict(line, held))])
                    continue
                if keep is None:
                    # The file's positions are kept when they all lie past this store's head.
                    keep = line.position > head
                position = line.position if keep else position + 1
                rows.append((position, line.stored))
                first, last, count = first or position, position, count + 1
            sql.insert(curs, rows)
        if reader.sha256 != plan.sha256:
            raise ExchangeError("the file changed between the check and the write: import again")
        plan.written, plan.first_position, plan.last_position = count, first, last
        plan.positions_kept = bool(keep) and count > 0
        _record(store, sql, curs, plan, actor, max(head, plan.last_position))


def _record(
    store: Store, sql: EventsSql, curs: Any, plan: Imported, actor: Actor, after: int
) -> None:
    """The ImportLog event, in the same transaction, after the imported events."""
    mapper = store.app.mapper
    log: Any = None
    for stored in sql.events_of(curs, IMPORT_LOG_ID):
        event: Any = mapper.to_domain_event(stored)
        log = event.mutate(log)
    ctx = CommandContext(
        command_id=f"import:{plan.sha256}",
        correlation_id=str(IMPORT_LOG_ID),
        causation_id=f"import:{plan.sha256}",
        actor=actor,
        node_id=store.settings.node_id,
    )
    if log is None:
        log = ImportLog.open(ctx)
    log.record(
        file_name=plan.path.name,
        sha256=plan.sha256,
        mode=plan.mode,
        written=plan.written,
        already_present=plan.skipped,
        first_position=plan.first_position,
        last_position=plan.last_position,
        source_node=plan.header.source_node,
        source_app=plan.header.app,
        exported_at=plan.header.exported_at,
        signed=plan.signature == "signature verified",
        ctx=ctx,
    )
    events = log.collect_events()
    rows = [(after + i, mapper.to_stored_event(e)) for i, e in enumerate(events, start=1)]
    sql.insert(curs, rows)
    sql.finish(curs, rows[-1][0])


# -- import: the entry point ---------------------------------------------------------------------


def import_events(
    store: Store,
    path: Path,
    progress: ProgressFn = _no_progress,
    check_only: bool = False,
    batch: int = BATCH,
    *,
    actor: Actor | None = None,
    require_signature: bool = False,
    extend: bool = False,
) -> Imported:
    """Check the whole file against the store, then write all of it in one transaction, or
    nothing. ``check_only`` reports what would happen (``problems`` lists refused lines)."""
    key = signing_key(store)
    if require_signature and key is None:
        raise ExchangeError("--require-signature needs JANUS_EXPORT_HMAC_KEY to verify with")
    plan = _check(store, path, key, extend, progress, batch)
    if require_signature and plan.signature != "signature verified":
        raise ExchangeError(f"{path} is not signed with this store's key ({plan.signature})")
    plan.checked_only = check_only
    if check_only:
        return plan
    if plan.problems:
        raise ImportRefused(plan.problems, plan.more_problems)
    who = actor or Actor(ActorKind.USER, os.environ.get("USER") or "operator")
    try:
        _write(store, plan, key, who, batch)
    except IntegrityError:
        raise ExchangeError(
            "another writer added events to the same aggregates during the import; "
            "nothing was written: import again"
        ) from None
    return plan
