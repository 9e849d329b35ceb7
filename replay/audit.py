"""Reading the story back from the event store: events, positions, times, and a goal's causes.

Everything here reads the event store itself, so it works with the API, NATS and the views down.
The relational views are used only as an index to find positions fast: what they answer is
trusted up to the view's own position, the rest of the log is scanned, and every event shown is
read and decoded from the store, never from a view row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, PersistenceError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier
from sqlalchemy import or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bootstrap.container import build_views_engine, eventsourcing_env
from bootstrap.settings import Settings
from commands.errors import CommandError, NotFound, StoreUnavailable
from domain.base import JanusAggregate
from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from domain.trade import TradeOrder
from event_store.application import JanusApplication
from event_store.messages import aggregate_type, event_type
from event_store.reader import LoggedEvent, NotificationReader

PAGE = 2_000
MIN_PREFIX = 4
HEX = frozenset("0123456789abcdef")
AGGREGATE_TYPES: tuple[type[JanusAggregate], ...] = (
    Goal,
    Confirmation,
    Effect,
    Job,
    JobFire,
    TradeOrder,
    Document,
    CommandRecord,
)
# Never part of a story: the first answer to an idempotency key, kept for replays of commands.
BOOKKEEPING_TOPICS = frozenset(
    get_topic(cls)
    for cls in vars(CommandRecord).values()
    if isinstance(cls, type) and issubclass(cls, CommandRecord.Event)
)
SUMMARY_SKIP = frozenset({"originator_id", "originator_version", "timestamp", "meta"})
SUMMARY_SKIP_ALL = SUMMARY_SKIP | {"originator_topic"}


class BadInput(Exception):
    """A value given on the command line that no command could accept."""


class NoSuchEvent(CommandError):
    code = "not-found"


class UnreadableEvent(Exception):
    """A stored event this version of Janus cannot decode (unknown topic, corrupt state)."""

    def __init__(self, position: int, topic: str, error: Exception) -> None:
        super().__init__(f"event at position {position} ({topic}) cannot be decoded: {error}")
        self.position = position


ProgressFn = Callable[[int], None]
"""Called with the number of log positions just covered; the CLI draws a bar from it."""


def _no_progress(_: int) -> None:
    return None


# -- plain values ------------------------------------------------------------------------------


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def plain(value: Any) -> Any:
    """A JSON-ready copy: ids and times as strings, enums as values, dataclasses as dicts."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return str(value)


def short(ident: object) -> str:
    return str(ident)[:8]


def event_fields(event: Any) -> dict[str, Any]:
    """An event's own facts, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in SUMMARY_SKIP_ALL}


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def event_summary(event: Any, limit: int = 100) -> str:
    parts = []
    for key, value in event_fields(event).items():
        shown = plain(value)
        if isinstance(shown, dict | list):
            shown = json.dumps(shown, sort_keys=True)
        parts.append(f"{key}={shown}")
    return one_line(", ".join(parts), limit)


def event_json(logged: LoggedEvent) -> dict[str, Any]:
    """The stable JSON form of one event (``janus events show --json``, ``tail --json``)."""
    event = logged.event
    meta = event.meta
    return {
        "position": logged.position,
        "event_id": str(meta.event_id),
        "type": logged.type_name,
        "topic": logged.topic,
        "aggregate_type": aggregate_type(logged.topic),
        "aggregate_id": str(logged.originator_id),
        "aggregate_version": logged.originator_version,
        "timestamp": plain(event.timestamp),
        "command_id": meta.command_id,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "actor": str(meta.actor),
        "node_id": meta.node_id,
        "trace_context": dict(meta.trace_context),
        "data": plain(event_fields(event)),
    }


def aggregate_json(aggregate: Any, position: int | None = None) -> dict[str, Any]:
    """An aggregate's state as plain JSON: its envelope, then its public attributes."""
    state = {k: plain(v) for k, v in vars(aggregate).items() if not k.startswith("_")}
    body: dict[str, Any] = {
        "id": str(aggregate.id),
        "type": type(aggregate).__qualname__,
        "version": aggregate.version,
        "created_on": plain(aggregate.created_on),
        "modified_on": plain(aggregate.modified_on),
        "state": state,
    }
    if position is not None:
        body["last_position"] = position
    return body


# -- points in the log -------------------------------------------------------------------------


def parse_position(text: str, what: str = "position") -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a log position (a whole number)") from None
    if value < 0:
        raise BadInput(f"{what} {text!r} is negative")
    return value


def parse_point(text: str, what: str = "point") -> int | datetime:
    """A log position (``1234``) or an ISO-8601 time (``2025-11-22T04:57:00Z``; naive = UTC)."""
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{what} {text!r} is neither a log position nor an ISO-8601 timestamp"
        ) from None
    return aware(when)


def parse_time(text: str, what: str = "time") -> datetime:
    point = parse_point(text, what)
    if isinstance(point, int):
        raise BadInput(f"{what} {text!r} must be an ISO-8601 timestamp, not a position")
    return point


def normalize_hex(value: str) -> str:
    return value.strip().lower().replace("-", "")


def is_id_prefix(value: str) -> bool:
    text = normalize_hex(value)
    return len(text) >= MIN_PREFIX and set(text) <= HEX


# -- direct reads of the events table ----------------------------------------------------------


class EventTable:
    """Indexed reads the notification API does not offer: one aggregate's events with their
    positions, the version an aggregate had at a position, ids by prefix.

    Both stores keep events in one table with a primary key on (originator_id,
    originator_version) and a position column (SQLite's rowid, Postgres' notification_id), so
    these are index lookups, never a scan of the log.
    """

    def __init__(self, app: JanusApplication) -> None:
        self._app = app
        recorder = app.recorder
        if isinstance(recorder, SQLiteApplicationRecorder):
            self._kind = "sqlite"
            self._table = recorder.events_table_name
        elif isinstance(recorder, PostgresApplicationRecorder):
            self._kind = "postgres"
            self._table = recorder.events_table_name
            self._schema = recorder.datastore.schema
        else:
            raise StoreUnavailable(f"no indexed reads for {type(recorder).__name__}")

    def _rows(self, sqlite_sql: str, postgres_sql: str, params: Sequence[Any]) -> list[Any]:
        recorder: Any = self._app.recorder
        if self._kind == "sqlite":
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(sqlite_sql.format(table=self._table), list(params))
                return list(c.fetchall())
        statement = SQL(postgres_sql).format(  # type: ignore[arg-type, unused-ignore]
            table=Identifier(self._schema, self._table)
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, list(params))
            return list(curs.fetchall())

    def _key(self, aggregate_id: UUID) -> Any:
        return aggregate_id.hex if self._kind == "sqlite" else aggregate_id

    def version_at(self, aggregate_id: UUID, position: int) -> int:
        """How many of the aggregate's events are at or before ``position`` (0: not yet)."""
        rows = self._rows(
            "SELECT MAX(originator_version) AS v FROM {table} WHERE originator_id=? AND rowid<=?",
            "SELECT MAX(originator_version) AS v FROM {table} "
            "WHERE originator_id=%s AND notification_id<=%s",
            (self._key(aggregate_id), position),
        )
        value = rows[0]["v"] if rows else None
        return int(value or 0)

    def events_of(
        self, aggregate_id: UUID, upto: int | None = None, limit: int = 2**31
    ) -> list[Notification]:
        """The aggregate's events in version order, each with its log position."""
        stop = upto if upto is not None else 2**62
        rows = self._rows(
            "SELECT rowid AS position, originator_version, topic, state FROM {table} "
            "WHERE originator_id=? AND rowid<=? ORDER BY originator_version LIMIT ?",
            "SELECT notification_id AS position, originator_version, topic, state FROM {table} "
            "WHERE originator_id=%s AND notification_id<=%s ORDER BY originator_version LIMIT %s",
            (self._key(aggregate_id), stop, limit),
        )
        return [
            Notification(
                id=int(row["position"]),
                originator_id=aggregate_id,
                originator_version=int(row["originator_version"]),
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[UUID]:
        """Aggregate ids starting with ``prefix`` (hex, dashes ignored), by index range."""
        text = normalize_hex(prefix)
        low = text.ljust(32, "0")
        high = _successor(text)
        if self._kind == "sqlite":
            params: list[Any] = [low]
            where = "originator_id>=?"
            if high is not None:
                where += " AND originator_id<?"
                params.append(high.ljust(32, "0"))
            rows = self._rows(
                f"SELECT DISTINCT originator_id AS id FROM {{table}} WHERE {where} "
                "ORDER BY originator_id LIMIT ?",
                "",
                [*params, limit],
            )
            return [UUID(row["id"]) for row in rows]
        params = [UUID(low)]
        where = "originator_id>=%s"
        if high is not None:
            where += " AND originator_id<%s"
            params.append(UUID(high.ljust(32, "0")))
        rows = self._rows(
            "",
            f"SELECT DISTINCT originator_id AS id FROM {{table}} WHERE {where} "
            "ORDER BY originator_id LIMIT %s",
            [*params, limit],
        )
        return [UUID(str(row["id"])) for row in rows]


def _successor(hex_prefix: str) -> str | None:
    """The smallest hex string of the same length greater than every extension of the prefix."""
    digits = list(hex_prefix)
    for i in range(len(digits) - 1, -1, -1):
        if digits[i] != "f":
            digits[i] = format(int(digits[i], 16) + 1, "x")
            return "".join(digits[: i + 1])
    return None


# -- the store, opened for reading -------------------------------------------------------------


@dataclass(frozen=True)
class ViewIndex:
    """The relational view's audit table, usable as an index up to ``position``."""

    engine: Engine
    position: int


@dataclass
class Store:
    """The event store opened for reading, plus the views as an optional index."""

    settings: Settings
    app: JanusApplication
    reader: NotificationReader
    table: EventTable
    view: ViewIndex | None
    notes: list[str] = field(default_factory=list)
    _engine: Engine | None = None

    @classmethod
    def open(cls, settings: Settings, use_views: bool = True) -> Store:
        if settings.embedded:
            settings.home.mkdir(parents=True, exist_ok=True)
        try:
            # A CLI call: small pools (bootstrap/container.py, CLI_POOL_SIZE).
            app = JanusApplication(eventsourcing_env(settings, small=True), name=settings.app_name)
        except PersistenceError as error:
            raise StoreUnavailable(
                f"event store unreachable at {settings.redacted_database_url()}: {error}"
            ) from error
        store = cls(settings, app, NotificationReader(app), EventTable(app), None)
        if use_views:
            store._open_view()
        return store

    def _open_view(self) -> None:
        """The views help only if they exist, are healthy, and describe this log."""
        from projections.relational import audit
        from projections.runner import projection_positions

        if self.settings.embedded and not (self.settings.home / "views.sqlite").exists():
            self.notes.append("no views yet: scanning the log")
            return
        try:
            engine = build_views_engine(self.settings, small=True)
            self._engine = engine
            with engine.connect() as conn:
                row = conn.execute(
                    select(projection_positions.c.position, projection_positions.c.state).where(
                        projection_positions.c.name == "relational"
                    )
                ).first()
                conn.execute(select(audit.c.position).limit(1)).all()
        except SQLAlchemyError as error:
            self.notes.append(f"views unavailable ({type(error).__name__}): scanning the log")
            return
        if row is None:
            self.notes.append("views not built: scanning the log")
            return
        head = self.head()
        position = int(row.position)
        if position > head:
            self.notes.append("views are ahead of this log (another store?): ignored")
            return
        if position < head:
            self.notes.append(f"views are {head - position} events behind: scanning the rest")
        self.view = ViewIndex(engine, position)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self.app.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def head(self) -> int:
        return self.app.head()

    def decode(self, notification: Notification) -> LoggedEvent:
        try:
            return self.reader.decode(notification)
        except Exception as error:  # unknown topic, upcast failure, corrupt JSON: all the same
            raise UnreadableEvent(notification.id, notification.topic, error) from error

    def pages(
        self,
        after: int = 0,
        stop: int | None = None,
        topics: Sequence[str] = (),
        progress: ProgressFn = _no_progress,
        page: int = PAGE,
    ) -> Iterator[list[Notification]]:
        """The log after ``after`` up to ``stop`` in pages, reporting progress by position."""
        position = after
        while True:
            batch = self.reader.read_after(position, page, topics=topics, stop=stop)
            if not batch:
                if stop is not None and stop > position:
                    progress(stop - position)
                return
            progress(batch[-1].id - position)
            position = batch[-1].id
            yield batch

    def events(
        self,
        after: int = 0,
        stop: int | None = None,
        topics: Sequence[str] = (),
        progress: ProgressFn = _no_progress,
    ) -> Iterator[LoggedEvent]:
        for batch in self.pages(after, stop, topics, progress):
            for notification in batch:
                yield self.decode(notification)

    def at(self, position: int) -> LoggedEvent:
        """The event at exactly this position."""
        found = self.reader.read_after(position - 1, 1, stop=position) if position > 0 else []
        if not found:
            raise NoSuchEvent(f"no event at position {position} (the log ends at {self.head()})")
        return self.decode(found[0])

    def at_or_before(self, position: int) -> LoggedEvent:
        """The last event at or before ``position`` (positions can have gaps)."""
        window = 64
        low = position
        while low > 0:
            low = max(0, position - window)
            found = self.reader.read_after(low, window, stop=position)
            if found:
                return self.decode(found[-1])
            window *= 8
        raise NoSuchEvent(f"no event at or before position {position}")

    def first_at_or_after(self, position: int, stop: int) -> Notification | None:
        found = self.reader.read_after(position - 1, 1, stop=stop)
        return found[0] if found else None

    # -- points ----------------------------------------------------------------------------------

    def position_of(self, point: int | datetime, what: str = "position") -> int:
        """A point as a position: positions are checked, times found by binary search.

        A time resolves to the last position whose event was recorded at or before it (event
        times follow log order to within one commit).
        """
        head = self.head()
        if isinstance(point, int):
            if point > head:
                raise BadInput(f"{what} {point} is beyond the end of the log (head {head})")
            return point
        best, low, high = 0, 1, head
        while low <= high:
            mid = (low + high) // 2
            found = self.first_at_or_after(mid, high)
            if found is None:
                high = mid - 1
                continue
            if aware(self.decode(found).event.timestamp) <= point:
                best, low = found.id, found.id + 1
            else:
                high = mid - 1
        return best

    # -- ids -------------------------------------------------------------------------------------

    def resolve_aggregate(self, value: str, kind: type[JanusAggregate] | None = None) -> UUID:
        """A full aggregate id or a unique prefix of one (as tables show them)."""
        label = kind.__name__.lower() if kind else "aggregate"
        try:
            ident = UUID(value)
        except ValueError:
            return self._by_prefix(value, label, kind)
        found = self.kind_of(ident)
        if found is None or (kind is not None and found != kind.__name__):
            raise NotFound(label, ident)
        return ident

    def _by_prefix(self, value: str, label: str, kind: type[JanusAggregate] | None) -> UUID:
        if not is_id_prefix(value):
            raise BadInput(f"{label} id {value!r} is neither a UUID nor a prefix of one")
        matches = self.table.ids_with_prefix(value, limit=50)
        if kind is not None:
            matches = [m for m in matches if self.kind_of(m) == kind.__name__]
        if not matches:
            raise NotFound(label, f"{value}…")
        if len(matches) > 1:
            raise BadInput(f"{label} id prefix {value!r} is ambiguous: give more characters")
        return matches[0]

    def kind_of(self, ident: UUID) -> str | None:
        """The aggregate type (``Goal``) of an id, from its first event; None if unknown."""
        for notification in self.table.events_of(ident, limit=1):
            return aggregate_type(notification.topic)
        return None

    def find_event(self, value: str, progress: ProgressFn = _no_progress) -> LoggedEvent:
        """An event by position, or by event id or unique prefix of one."""
        text = value.strip()
        if text.isdigit():
            return self.at(int(text))
        if not is_id_prefix(text):
            raise BadInput(f"{value!r} is neither a log position nor an event id")
        prefix = normalize_hex(text)
        positions = self._event_positions_from_view(prefix)
        after = self.view.position if self.view else 0
        matches = [e for e in (self.at(p) for p in positions) if _id_matches(e, prefix)]
        needle = f'"event_id":"{prefix}'.encode()
        for batch in self.pages(after, self.head(), progress=progress):
            for notification in batch:
                if needle in notification.state:
                    logged = self.decode(notification)
                    if _id_matches(logged, prefix):
                        matches.append(logged)
        if not matches:
            raise NotFound("event", f"{value}…" if len(prefix) < 32 else value)
        if len(matches) > 1:
            raise BadInput(f"event id prefix {value!r} is ambiguous: give more characters")
        return matches[0]

    def _event_positions_from_view(self, prefix: str) -> list[int]:
        if self.view is None:
            return []
        from projections.relational import audit

        dashed = str(UUID(prefix.ljust(32, "0")))[: _dashed_length(len(prefix))]
        query = (
            select(audit.c.position)
            .where(audit.c.event_id.startswith(dashed, autoescape=True))
            .where(audit.c.position <= self.view.position)
            .limit(3)
        )
        with self.view.engine.connect() as conn:
            return [int(p) for p in conn.execute(query).scalars()]


def _dashed_length(hex_length: int) -> int:
    """How many characters of the dashed form cover ``hex_length`` hex digits."""
    return hex_length + sum(1 for cut in (8, 12, 16, 20) if hex_length > cut)


def _id_matches(logged: LoggedEvent, prefix: str) -> bool:
    return bool(logged.event.meta.event_id.hex.startswith(prefix))


# -- event types -------------------------------------------------------------------------------


def _event_classes() -> dict[str, str]:
    """Every known event type name (``Goal.Submitted``) and its stored topic."""
    known: dict[str, str] = {}
    for aggregate in AGGREGATE_TYPES:
        for name in dir(aggregate):
            value = getattr(aggregate, name)
            if isinstance(value, type) and issubclass(value, JanusAggregate.Event):
                topic = get_topic(value)
                if topic.rsplit(":", 1)[-1].startswith(aggregate.__name__ + "."):
                    known[event_type(topic)] = topic
    return known


EVENT_TOPICS = _event_classes()


def topics_for(types: Iterable[str]) -> list[str]:
    """``Goal`` (every Goal event), ``Goal.Granted``-style names, or a bare ``Granted``."""
    chosen: set[str] = set()
    for wanted in types:
        matched = {
            topic
            for name, topic in EVENT_TOPICS.items()
            if wanted in (name, name.split(".", 1)[0], name.split(".", 1)[-1])
        }
        if not matched:
            known = ", ".join(sorted({n.split(".")[0] for n in EVENT_TOPICS}))
            raise BadInput(f"unknown event type {wanted!r} (aggregates: {known})")
        chosen |= matched
    return sorted(chosen)


# -- a goal's story ----------------------------------------------------------------------------

ID_FIELD = re.compile(r"_id$")


@dataclass
class Story:
    """Every event that belongs to a goal's story, in log order, read from the store."""

    goal_id: UUID
    events: list[LoggedEvent]
    aggregates: set[UUID]
    source: str
    head: int

    def of(self, aggregate_id: UUID) -> list[LoggedEvent]:
        return [e for e in self.events if e.originator_id == aggregate_id]


class _Closure:
    """What is related to a goal, grown forward through the log.

    An event belongs to the story when its aggregate already does, when its correlation id is
    the goal, when its causation id names an event, aggregate or decision of the story, or when
    one of its ``*_id`` fields names an aggregate or decision of the story. Causes precede their
    effects in the log, so one forward pass finds everything.
    """

    def __init__(self, goal_id: UUID) -> None:
        self.goal = str(goal_id)
        self.aggregates: set[UUID] = {goal_id}
        self.refs: set[str] = {goal_id.hex}
        self.needles: set[bytes] = {goal_id.hex.encode(), str(goal_id).encode()}

    def _add_ref(self, ident: UUID) -> None:
        self.refs.add(ident.hex)
        self.needles.add(ident.hex.encode())
        self.needles.add(str(ident).encode())

    def might_relate(self, notification: Notification) -> bool:
        """A cheap test on the raw record: false means certainly unrelated."""
        if notification.topic in BOOKKEEPING_TOPICS:
            return False
        if UUID(str(notification.originator_id)) in self.aggregates:
            return True
        state = notification.state
        return any(needle in state for needle in self.needles)

    def relates(self, logged: LoggedEvent) -> bool:
        event = logged.event
        if logged.originator_id in self.aggregates:
            return True
        meta = event.meta
        if meta.correlation_id == self.goal or _as_hex(meta.causation_id) in self.refs:
            return True
        return any(
            isinstance(value, UUID) and value.hex in self.refs
            for key, value in vars(event).items()
            if ID_FIELD.search(key) and key != "originator_id"
        )

    def add(self, logged: LoggedEvent) -> None:
        self.aggregates.add(logged.originator_id)
        self._add_ref(logged.originator_id)
        self._add_ref(logged.event.meta.event_id)
        decision_id = getattr(logged.event, "decision_id", None)
        if isinstance(logged.event, Goal.DecisionRecorded) and isinstance(decision_id, UUID):
            self._add_ref(decision_id)

    def offer(self, logged: LoggedEvent) -> bool:
        if self.relates(logged):
            self.add(logged)
            return True
        return False


def _as_hex(value: str) -> str:
    try:
        return UUID(value).hex
    except ValueError:
        return value


def goal_story(
    store: Store, goal_id: UUID, progress: ProgressFn = _no_progress, upto: int | None = None
) -> Story:
    """The goal's whole story: the index finds candidates, the store says what they are."""
    head = store.head() if upto is None else upto
    closure = _Closure(goal_id)
    candidates: list[LoggedEvent] = []
    scanned_from = 0
    source = "log"
    if store.view is not None and store.view.position > 0:
        limit = min(store.view.position, head)
        candidates = [store.at(p) for p in _view_candidates(store.view, goal_id, limit)]
        scanned_from = limit
        source = "views+log" if limit < head else "views"
    for logged in sorted(candidates, key=lambda e: e.position):
        closure.offer(logged)
    for batch in store.pages(scanned_from, head, progress=progress):
        for notification in batch:
            if closure.might_relate(notification):
                closure.offer(store.decode(notification))
    events: list[LoggedEvent] = []
    for aggregate_id in closure.aggregates:
        events += [store.decode(n) for n in store.table.events_of(aggregate_id, upto=head)]
    if not any(e.originator_id == goal_id for e in events):
        raise NotFound("goal", goal_id)
    events.sort(key=lambda e: e.position)
    return Story(goal_id, events, set(closure.aggregates), source, head)


def _view_candidates(view: ViewIndex, goal_id: UUID, limit: int) -> list[int]:
    """Positions the audit view links to the goal, grown to a fixpoint (a superset)."""
    from projections.relational import audit

    aggregates = {str(goal_id)}
    refs = {str(goal_id)}
    positions: set[int] = set()
    with view.engine.connect() as conn:
        while True:
            query = (
                select(audit.c.position, audit.c.aggregate_id, audit.c.event_id)
                .where(audit.c.position <= limit)
                .where(
                    or_(
                        audit.c.correlation_id == str(goal_id),
                        audit.c.aggregate_id.in_(sorted(aggregates)),
                        audit.c.causation_id.in_(sorted(refs)),
                    )
                )
            )
            rows = conn.execute(query).all()
            grown = {int(r.position) for r in rows} - positions
            if not grown:
                return sorted(positions)
            positions |= grown
            for row in rows:
                aggregates.add(row.aggregate_id)
                refs.update((row.aggregate_id, row.event_id, UUID(row.event_id).hex))


# -- the causation tree ------------------------------------------------------------------------


@dataclass
class Node:
    kind: str
    ident: str
    events: list[LoggedEvent]
    facts: dict[str, Any]
    children: list[Node] = field(default_factory=list)

    @property
    def first_position(self) -> int:
        return self.events[0].position if self.events else 0


def fork_origin(events: list[LoggedEvent]) -> tuple[str, int] | None:
    """(original goal id, position) when this goal was created by ``janus replay fork``."""
    for logged in events[:2]:  # Goal.fork records Forked right after Submitted
        if isinstance(logged.event, Goal.Forked):
            return str(logged.event.original_id), logged.event.at_position
    return None


def causation_tree(story: Story, full: bool = False) -> Node:
    """Goal -> decisions -> confirmations -> effects; anything else under what caused it."""
    by_aggregate: dict[UUID, list[LoggedEvent]] = {}
    for logged in story.events:
        by_aggregate.setdefault(logged.originator_id, []).append(logged)
    goal_events = by_aggregate.pop(story.goal_id)
    root = _goal_node(story.goal_id, goal_events, full)
    decisions: dict[UUID, Node] = {}
    owner_of_event: dict[str, Node] = {}
    for logged in goal_events:
        owner_of_event[logged.event.meta.event_id.hex] = root
    for child in root.children:
        decision_id = UUID(child.ident)
        decisions[decision_id] = child
        owner_of_event[child.events[0].event.meta.event_id.hex] = child
    pending = sorted(by_aggregate.items(), key=lambda item: item[1][0].position)
    nodes: dict[UUID, Node] = {story.goal_id: root}
    for aggregate_id, events in pending:
        node = _aggregate_node(aggregate_id, events, full)
        nodes[aggregate_id] = node
        for logged in events:
            owner_of_event[logged.event.meta.event_id.hex] = node
        _parent(events[0], decisions, nodes, owner_of_event, root).children.append(node)
    _sort(root)
    return root


def _parent(
    created: LoggedEvent,
    decisions: dict[UUID, Node],
    nodes: dict[UUID, Node],
    owner_of_event: dict[str, Node],
    root: Node,
) -> Node:
    event = created.event
    decision_id = getattr(event, "decision_id", None)
    if isinstance(decision_id, UUID) and decision_id in decisions:
        return decisions[decision_id]
    for name in ("confirmation_id", "job_id"):
        ref = getattr(event, name, None)
        if isinstance(ref, UUID) and ref in nodes:
            return nodes[ref]
    cause = _as_hex(event.meta.causation_id)
    if cause in owner_of_event:
        return owner_of_event[cause]
    for ident, node in nodes.items():
        if ident.hex == cause:
            return node
    return root


def _sort(node: Node) -> None:
    node.children.sort(key=lambda n: n.first_position)
    for child in node.children:
        _sort(child)


def _waited(start: LoggedEvent, end: LoggedEvent | None) -> float | None:
    if end is None:
        return None
    return (aware(end.event.timestamp) - aware(start.event.timestamp)).total_seconds()


def _goal_node(goal_id: UUID, events: list[LoggedEvent], full: bool) -> Node:
    decision_events = (Goal.DecisionRecorded, Goal.DecisionReplayed)
    own = [e for e in events if not isinstance(e.event, decision_events)]
    submitted = events[0].event
    facts: dict[str, Any] = {
        "text": submitted.text,
        "submitted_by": submitted.submitted_by,
        "priority": getattr(submitted, "priority", None),
        "status": "submitted",
        "outcome": None,
    }
    origin = fork_origin(events)
    if origin is not None:
        facts["forked_from"], facts["forked_at_position"] = origin
    for logged in own:
        match logged.event:
            case Goal.Planned() as planned:
                facts["status"], facts["plan"] = "planned", list(planned.steps)
            case Goal.Completed() as done:
                facts["status"], facts["outcome"] = "completed", done.summary
            case Goal.Failed() as failed:
                facts["status"], facts["outcome"] = "failed", failed.reason
            case Goal.Cancelled() as cancelled:
                facts["status"], facts["outcome"] = "cancelled", cancelled.reason
    node = Node("goal", str(goal_id), own, facts)
    by_decision: dict[UUID, Node] = {}
    for logged in events:
        if isinstance(logged.event, Goal.DecisionRecorded):
            child = _decision_node(logged, full)
            by_decision[logged.event.decision_id] = child
            node.children.append(child)
        elif isinstance(logged.event, Goal.DecisionReplayed):
            _add_replay(by_decision[logged.event.decision_id], logged, full)
    return node


def _add_replay(decision: Node, logged: LoggedEvent, full: bool) -> None:
    """A recorded re-run of the decision (``janus replay decisions --record``)."""
    event = logged.event
    replay: dict[str, Any] = {
        "position": logged.position,
        "model": event.model,
        "model_digest": event.model_digest,
        "action": plain(event.action),
        "agrees": event.agrees,
        "recorded_at": plain(event.timestamp),
    }
    if full:
        replay["raw_output"] = event.raw_output
    decision.events.append(logged)
    decision.facts.setdefault("replays", []).append(replay)


def _decision_node(logged: LoggedEvent, full: bool) -> Node:
    event = logged.event
    facts: dict[str, Any] = {
        "model": event.model,
        "model_digest": event.model_digest,
        "parameters": plain(event.parameters),
        "prompt_summary": one_line(event.prompt, 120),
        "context_ids": list(event.context_ids),
        "action": plain(event.action),
        "timings": plain(event.timings),
    }
    if event.step:  # an agent step: its key, cost, and what the model saw and said
        facts.update(
            step=event.step,
            usage=plain(event.usage),
            context_position=event.context_position,
            runtime=plain(event.runtime),
            prompt_tail=event.prompt[-2_000:],
            raw_output_summary=one_line(event.raw_output, 200),
        )
    if full:
        facts["prompt"] = event.prompt
        facts["raw_output"] = event.raw_output
    return Node("decision", str(event.decision_id), [logged], facts)


def _aggregate_node(aggregate_id: UUID, events: list[LoggedEvent], full: bool) -> Node:
    created = events[0].event
    kind = aggregate_type(events[0].topic)
    if isinstance(created, Confirmation.Requested):
        return Node("confirmation", str(aggregate_id), events, _confirmation_facts(events))
    if isinstance(created, Effect.Started):
        return Node("effect", str(aggregate_id), events, _effect_facts(events))
    if isinstance(created, Job.Scheduled):
        facts = {"name": created.name, "trigger": plain(created.trigger)}
        facts["action"] = plain(created.action)
        return Node("job", str(aggregate_id), events, facts)
    if isinstance(created, JobFire.Fired | JobFire.Missed):
        facts = {"scheduled_for": plain(created.scheduled_for), "status": events[-1].type_name}
        return Node("fire", str(aggregate_id), events, facts)
    if isinstance(created, TradeOrder.Proposed):
        facts = {
            "symbol": created.symbol,
            "side": created.side,
            "quantity": plain(created.quantity),
            "limit_price": plain(created.limit_price),
            "status": events[-1].type_name.split(".")[-1].lower(),
        }
        return Node("order", str(aggregate_id), events, facts)
    if isinstance(created, Goal.Submitted):
        facts = {"text": created.text, "events": len(events)}
        origin = fork_origin(events)
        if origin is not None:
            facts["forked_from"], facts["forked_at_position"] = origin
        return Node("fork" if origin else "goal", str(aggregate_id), events[:1], facts)
    return Node(kind.lower(), str(aggregate_id), events, {"summary": event_summary(created)})


def _confirmation_facts(events: list[LoggedEvent]) -> dict[str, Any]:
    requested = events[0]
    created = requested.event
    facts: dict[str, Any] = {
        "action": created.action,
        "parameters": plain(created.parameters),
        "hazard": created.hazard,
        "requested_at": plain(created.timestamp),
        "expires_at": plain(created.expires_at),
        "status": "pending",
        "decided_by": None,
        "decided_at": None,
        "waited_seconds": None,
        "reason": None,
    }
    for logged in events[1:]:
        event = logged.event
        status = {
            Confirmation.Granted: "granted",
            Confirmation.Denied: "denied",
            Confirmation.Expired: "expired",
            Confirmation.Cancelled: "cancelled",
        }.get(type(event))
        if status is None:
            continue
        facts["status"] = status
        facts["decided_at"] = plain(event.timestamp)
        facts["waited_seconds"] = _waited(requested, logged)
        facts["decided_by"] = (
            getattr(event, "granted_by", None)
            or getattr(event, "denied_by", None)
            or getattr(event, "cancelled_by", None)
        )
        facts["reason"] = getattr(event, "reason", None)
    return facts


def _effect_facts(events: list[LoggedEvent]) -> dict[str, Any]:
    started = events[0]
    facts: dict[str, Any] = {
        "action": started.event.action,
        "parameters": plain(started.event.parameters),
        "idempotency_key": started.event.idempotency_key,
        "status": "started",
        "attempts": 1,
        "result": None,
        "error": None,
        "happened": None,
        "duration_seconds": _waited(started, events[-1]),
    }
    for logged in events[1:]:
        match logged.event:
            case Effect.AttemptStarted() as attempt:
                facts["status"], facts["attempts"] = "started", attempt.attempt
            case Effect.Succeeded() as ok:
                facts["status"], facts["result"] = "succeeded", plain(ok.result)
            case Effect.Failed() as failed:
                facts["status"], facts["error"] = "failed", failed.error
            case Effect.OutcomeUnknown() as unknown:
                facts["status"], facts["error"] = "outcome_unknown", unknown.reason
            case Effect.Reconciled() as reconciled:
                facts["status"], facts["happened"] = "reconciled", reconciled.happened
                facts["reconciled_by"] = reconciled.reconciled_by
                facts["note"] = reconciled.note
    return facts


def event_line_json(logged: LoggedEvent) -> dict[str, Any]:
    meta = logged.event.meta
    return {
        "position": logged.position,
        "event_id": str(meta.event_id),
        "type": logged.type_name,
        "timestamp": plain(logged.event.timestamp),
        "actor": str(meta.actor),
        "node_id": meta.node_id,
        "command_id": meta.command_id,
        "causation_id": meta.causation_id,
        "summary": event_summary(logged.event),
    }


def tree_json(node: Node) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "id": node.ident,
        "facts": plain(node.facts),
        "events": [event_line_json(e) for e in node.events],
        "children": [tree_json(c) for c in node.children],
    }


def flatten(node: Node) -> list[Node]:
    return [node, *(n for child in node.children for n in flatten(child))]


# -- search ------------------------------------------------------------------------------------

SEARCH_KINDS = ("goal", "decision", "confirmation", "effect")
SEARCH_AGGREGATES: dict[str, type[JanusAggregate]] = {
    "goal": Goal,
    "confirmation": Confirmation,
    "effect": Effect,
}


@dataclass
class Found:
    """One goal, decision, confirmation or effect, folded from its events."""

    kind: str
    ident: str
    goal_id: str
    status: str
    created_at: datetime
    updated_at: datetime
    position: int
    title: str
    hazard: str | None = None
    actors: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    haystack: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.ident,
            "goal_id": self.goal_id,
            "status": self.status,
            "hazard": self.hazard,
            "created_at": plain(self.created_at),
            "updated_at": plain(self.updated_at),
            "last_position": self.position,
            "actors": sorted(self.actors),
            "nodes": sorted(self.nodes),
            "title": self.title,
        }


@dataclass(frozen=True)
class Criteria:
    text: str | None = None
    kinds: tuple[str, ...] = ()
    actor: str | None = None
    status: str | None = None
    hazard: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    node: str | None = None
    outcome_unknown: bool = False
    expired: bool = False
    limit: int = 50

    def effective(self) -> Criteria:
        """The one-flag shortcuts, spelled out; kinds narrowed to those a filter applies to."""
        kinds = set(self.kinds or SEARCH_KINDS)
        status = self.status
        if self.outcome_unknown:
            kinds &= {"effect"}
            status = "outcome_unknown"
        if self.expired:
            kinds &= {"confirmation"}
            status = "expired"
        if self.hazard:
            kinds &= {"confirmation"}
        if status:
            kinds -= {"decision"}
        unknown = set(self.kinds) - set(SEARCH_KINDS)
        if unknown:
            raise BadInput(
                f"unknown kind {sorted(unknown)[0]!r} (kinds: {', '.join(SEARCH_KINDS)})"
            )
        if self.outcome_unknown and self.expired:
            raise BadInput("--outcome-unknown and --expired select different kinds: pick one")
        if self.since and self.until and self.since > self.until:
            raise BadInput("--since is after --until")
        return Criteria(
            text=self.text,
            kinds=tuple(k for k in SEARCH_KINDS if k in kinds),
            actor=self.actor,
            status=status,
            hazard=self.hazard,
            since=self.since,
            until=self.until,
            node=self.node,
            limit=self.limit,
        )

    def accepts(self, found: Found) -> bool:
        if found.kind not in self.kinds:
            return False
        if self.status and found.status != self.status:
            return False
        if self.hazard and found.hazard != self.hazard:
            return False
        if self.since and found.created_at < self.since:
            return False
        if self.until and found.created_at > self.until:
            return False
        if self.node and self.node not in found.nodes:
            return False
        if self.actor and not any(self.actor.lower() in a.lower() for a in found.actors):
            return False
        if self.text:
            needle = self.text.lower()
            return any(needle in text.lower() for text in found.haystack)
        return True


class _Folder:
    """Folds goal, confirmation and effect events into search records, one event at a time."""

    def __init__(self) -> None:
        self.found: dict[str, Found] = {}

    def _touch(self, found: Found, logged: LoggedEvent) -> None:
        meta = logged.event.meta
        found.actors.add(str(meta.actor))
        found.nodes.add(meta.node_id)
        found.updated_at = aware(logged.event.timestamp)
        found.position = logged.position

    def _new(self, kind: str, ident: str, goal_id: str, logged: LoggedEvent, **kw: Any) -> Found:
        when = aware(logged.event.timestamp)
        found = Found(kind, ident, goal_id, created_at=when, updated_at=when, position=0, **kw)
        self.found[ident] = found
        return found

    def offer(self, logged: LoggedEvent) -> None:
        event = logged.event
        ident = str(logged.originator_id)
        if isinstance(event, Goal.Submitted | Confirmation.Requested | Effect.Started):
            found = self._create(logged)
        elif isinstance(event, Goal.DecisionRecorded):
            found = self._new(
                "decision",
                str(event.decision_id),
                ident,
                logged,
                status="recorded",
                title=f"{event.action.get('name', '?')} by {event.model}",
                haystack=[
                    event.prompt,
                    event.raw_output,
                    json.dumps(plain(event.action)),
                    event.model,
                ],
            )
            self._touch(found, logged)
            if ident in self.found:
                self._touch(self.found[ident], logged)
            return
        elif ident in self.found:
            found = self.found[ident]
            self._change(found, event)
        else:
            return
        self._touch(found, logged)

    def _create(self, logged: LoggedEvent) -> Found:
        event = logged.event
        ident = str(logged.originator_id)
        if isinstance(event, Goal.Submitted):
            return self._new(
                "goal", ident, ident, logged, status="submitted", title=event.text,
                haystack=[event.text, event.submitted_by],
            )  # fmt: skip
        if isinstance(event, Confirmation.Requested):
            params = json.dumps(plain(event.parameters), sort_keys=True)
            return self._new(
                "confirmation", ident, str(event.goal_id), logged, status="pending",
                hazard=event.hazard, title=f"{event.action} {params}",
                haystack=[event.action, params],
            )  # fmt: skip
        params = json.dumps(plain(event.parameters), sort_keys=True)
        return self._new(
            "effect", ident, str(event.goal_id), logged, status="started",
            title=f"{event.action} {params}", haystack=[event.action, params],
        )  # fmt: skip

    def _change(self, found: Found, event: Any) -> None:
        status = event_type(get_topic(type(event))).split(".")[-1]
        statuses = {
            "Planned": "planned",
            "Completed": "completed",
            "Failed": "failed",
            "Cancelled": "cancelled",
            "Granted": "granted",
            "Denied": "denied",
            "Expired": "expired",
            "AttemptStarted": "started",
            "Succeeded": "succeeded",
            "OutcomeUnknown": "outcome_unknown",
            "Reconciled": "reconciled",
        }
        found.status = statuses.get(status, found.status)
        for key, value in event_fields(event).items():
            if isinstance(value, str):
                found.haystack.append(value)
            elif isinstance(value, dict | list):
                found.haystack.append(json.dumps(plain(value), sort_keys=True))
            if key in ("granted_by", "denied_by", "cancelled_by", "reconciled_by"):
                found.actors.add(str(value))


def _search_topics(kinds: Iterable[str]) -> list[str]:
    wanted = {"Goal" if k == "decision" else k.capitalize() for k in kinds}
    return topics_for(sorted(wanted))


def search(
    store: Store, criteria: Criteria, progress: ProgressFn = _no_progress
) -> tuple[list[Found], str]:
    """Matching records, newest first, and where they were found ("log" or "views+log")."""
    wanted = criteria.effective()
    if not wanted.kinds:
        return [], "none"
    topics = _search_topics(wanted.kinds)
    head = store.head()
    folder = _Folder()
    source = "log"
    candidates = _search_candidates(store, wanted) if store.view is not None else None
    if candidates is None:
        for logged in store.events(0, head, topics, progress):
            folder.offer(logged)
    else:
        source = "views+log"
        assert store.view is not None
        for batch in store.pages(store.view.position, head, topics, progress):
            candidates.update(UUID(str(n.originator_id)) for n in batch)
        for aggregate_id in sorted(candidates):
            for notification in store.table.events_of(aggregate_id, upto=head):
                folder.offer(store.decode(notification))
    found = [f for f in folder.found.values() if wanted.accepts(f)]
    if wanted.text:
        found += _matching_their_goal(store, folder, wanted, head, found)
    found.sort(key=lambda f: (f.created_at, f.position), reverse=True)
    return found[: wanted.limit], source


def _matching_their_goal(
    store: Store, folder: _Folder, wanted: Criteria, head: int, matched: list[Found]
) -> list[Found]:
    """Decisions, confirmations and effects whose own text does not match but whose goal's does
    ("front door" finds the confirmation of the goal "unlock the front door")."""
    assert wanted.text is not None
    needle = wanted.text.lower()
    others = replace(wanted, text=None)
    seen = {id(f) for f in matched}
    texts: dict[str, str | None] = {
        f.ident: f.title for f in folder.found.values() if f.kind == "goal"
    }
    extra = []
    for found in folder.found.values():
        if found.kind == "goal" or id(found) in seen or not others.accepts(found):
            continue
        if found.goal_id not in texts:
            texts[found.goal_id] = _goal_text(store, found.goal_id, head)
        text = texts[found.goal_id]
        if text is not None and needle in text.lower():
            extra.append(found)
    return extra


def _goal_text(store: Store, goal_id: str, head: int) -> str | None:
    try:
        ident = UUID(goal_id)
    except ValueError:
        return None
    for notification in store.table.events_of(ident, upto=head, limit=1):
        event = store.decode(notification).event
        return event.text if isinstance(event, Goal.Submitted) else None
    return None


def _search_candidates(store: Store, wanted: Criteria) -> set[UUID] | None:
    """Aggregates the views say may match, up to the view's position; None if they cannot say."""
    from projections.relational import confirmations, decisions, effects, goals

    assert store.view is not None
    columns = {
        "goal": (goals.c.id, goals.c.submitted_at, goals.c.status),
        "decision": (decisions.c.goal_id, decisions.c.recorded_at, None),
        "confirmation": (confirmations.c.id, confirmations.c.requested_at, confirmations.c.status),
        "effect": (effects.c.id, effects.c.started_at, effects.c.status),
    }
    found: set[UUID] = set()
    try:
        with store.view.engine.connect() as conn:
            for kind in wanted.kinds:
                ident, created, status = columns[kind]
                query = select(ident)
                if wanted.status is not None and status is not None:
                    query = query.where(status == wanted.status)
                if kind == "confirmation" and wanted.hazard:
                    query = query.where(confirmations.c.hazard == wanted.hazard)
                # Times are compared again exactly on the events; the view only narrows.
                if wanted.since is not None:
                    query = query.where(created >= wanted.since - timedelta(seconds=1))
                if wanted.until is not None:
                    query = query.where(created <= wanted.until + timedelta(seconds=1))
                found.update(UUID(str(v)) for v in conn.execute(query).scalars())
    except SQLAlchemyError as error:
        store.notes.append(f"views unusable for search ({type(error).__name__}): scanning")
        return None
    return found
