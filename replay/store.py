"""The event store opened for reading, plus the relational views as an optional index.

Everything here reads the event store itself, so it works with the API, NATS and the views down.
The relational views are used only as an index to find positions fast: what they answer is
trusted up to the view's own position, the rest of the log is scanned, and every event shown is
read and decoded from the store, never from a view row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bootstrap.settings import Settings
from commands.errors import CommandError, NotFound
from domain.base import JanusAggregate
from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from domain.trade import TradeOrder
from event_store.application import JanusApplication
from event_store.events_table import EventTable, normalize_hex
from event_store.messages import aggregate_type, event_type
from event_store.reader import LoggedEvent, NotificationReader
from projections.relational.tables import audit
from projections.runner import projection_positions
from replay.values import BadInput, aware, is_id_prefix

PAGE = 2_000
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


class NoSuchEvent(CommandError):
    code = "not-found"


class UnreadableEvent(Exception):
    """A stored event this version of Janus cannot decode (unknown topic, corrupt state)."""

    def __init__(self, position: int, topic: str, error: Exception) -> None:
        super().__init__(f"event at position {position} ({topic}) cannot be decoded: {error}")
        self.position = position


ProgressFn = Callable[[int], None]
"""Called with the number of log positions just covered; the CLI draws a bar from it."""


def no_progress(_: int) -> None:
    return None


# -- the store, opened for reading -------------------------------------------------------------


@dataclass(frozen=True)
class ViewIndex:
    """The relational view's audit table, usable as an index up to ``position``."""

    engine: Engine
    position: int


@dataclass
class Store:
    """The event store opened for reading, plus the views as an optional index.

    Built by ``bootstrap.history.open_store``; ``settings`` are what the readers need of them
    (the export key, the poll interval, the node)."""

    settings: Settings
    app: JanusApplication
    reader: NotificationReader
    table: EventTable
    view: ViewIndex | None
    notes: list[str] = field(default_factory=list)
    _engine: Engine | None = None

    def attach_views(self, engine: Engine) -> None:
        """Use the views behind ``engine`` as an index, if they are healthy and describe this
        log; the store closes the engine either way."""
        self._engine = engine
        try:
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
        progress: ProgressFn = no_progress,
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
        progress: ProgressFn = no_progress,
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

    def find_event(self, value: str, progress: ProgressFn = no_progress) -> LoggedEvent:
        """An event by position, or by event id or unique prefix of one (a number up to the
        head is a position)."""
        text = value.strip()
        if text.isdigit():
            # A position, unless past the log's end: an id prefix can be all digits too (one
            # in forty 8-character prefixes is).
            if int(text) <= self.head() or not is_id_prefix(text):
                return self.at(int(text))
            try:
                return self._by_id_prefix(value, text, progress)
            except NotFound:
                return self.at(int(text))  # neither: said as the position it looks like
        if not is_id_prefix(text):
            raise BadInput(f"{value!r} is neither a log position nor an event id")
        return self._by_id_prefix(value, text, progress)

    def _by_id_prefix(self, value: str, text: str, progress: ProgressFn) -> LoggedEvent:
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
