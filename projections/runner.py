"""Feeds a SQL projection from the notification log, storing its position with each view change.

Each batch is one transaction: view rows and the new position commit together, so a crash loses
or repeats nothing. A failing event stops the projection at that position with the error recorded
(``stalled``); nothing is skipped unless an operator says so, and that is recorded too.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

from eventsourcing.persistence import Notification
from eventsourcing.utils import TopicError
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import InterfaceError, OperationalError

from event_store.reader import LoggedEvent, NotificationReader
from projections.migrations import migrate

log = logging.getLogger(__name__)

RUNNING, STALLED = "running", "stalled"

# Log positions outgrow int4 (2**31) on a busy log. SQLite's INTEGER is already 64-bit, and an
# INTEGER PRIMARY KEY there is the rowid itself, so SQLite keeps it.
POSITION = BigInteger().with_variant(Integer(), "sqlite")

# Created by the migrations (projections/migrations); declared here for the code that uses them.
runtime_metadata = MetaData()

projection_positions = Table(
    "projection_positions",
    runtime_metadata,
    Column("name", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("position", POSITION, nullable=False),
    Column("state", String(20), nullable=False),
    Column("error", Text),
    Column("error_position", POSITION),
    Column("skipped", Text, nullable=False, default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which generation of a projection's tables is live, and which one a rebuild or verify is
# building. Kept apart from the position row so that building never contends with the runner.
projection_generations = Table(
    "projection_generations",
    runtime_metadata,
    Column("name", String(100), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("building", Integer),
    Column("purpose", String(20)),
    Column("building_position", POSITION),
    Column("building_started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class SqlProjection(ABC):
    name: ClassVar[str]
    version: ClassVar[int]
    metadata: MetaData

    @abstractmethod
    def process_event(self, event: LoggedEvent, conn: Connection) -> None:
        """Apply one event's view changes on ``conn``. Ignored events need no code."""

    def create_schema(self, conn: Connection) -> None:
        self.metadata.create_all(conn)

    def prepare(self, events: Sequence[LoggedEvent], conn: Connection) -> None:  # noqa: B027
        """Called with a batch's events before any is processed: read ahead what they need."""

    def flush(self, conn: Connection) -> None:  # noqa: B027 - a hook most projections skip
        """Write what ``process_event`` buffered; called once per transaction, before commit."""

    def discard(self) -> None:  # noqa: B027 - a hook most projections skip
        """Forget what ``process_event`` buffered for a transaction that is rolled back."""


class RebuildableProjection(SqlProjection):
    """A projection whose tables can be built again, beside the live ones, under a suffix."""

    @property
    @abstractmethod
    def tables(self) -> tuple[Table, ...]:
        """This generation's tables; the same order in every generation."""

    @abstractmethod
    def at_generation(self, suffix: str) -> RebuildableProjection:
        """The same projection writing to tables whose names end in ``suffix``."""


class ProjectionStalled(RuntimeError):
    pass


class EventFailed(Exception):
    """One event could not be projected: the event's problem (or the projection's bug)."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(position, error)
        self.position = position
        self.error = error

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class BatchFailed(Exception):
    """Writing a batch failed and no single event can be blamed yet: apply them one by one."""


class Decoded(NamedTuple):
    """A notification decoded ahead of projecting it; a decoding failure waits for its turn."""

    position: int
    event: LoggedEvent | None = None
    error: Exception | None = None


class Applied(NamedTuple):
    """What a batch did: how many events it applied, and the stored position after it (None
    when another runner moved the position, so only reading it tells)."""

    applied: int
    position: int | None


def decode_all(reader: NotificationReader, notifications: Sequence[Notification]) -> list[Decoded]:
    decoded = []
    for notification in notifications:
        try:
            decoded.append(Decoded(notification.id, reader.decode(notification)))
        except Exception as error:  # noqa: BLE001 - raised as EventFailed when its turn comes
            decoded.append(Decoded(notification.id, error=error))
    return decoded


def apply_events(
    projection: SqlProjection,
    reader: NotificationReader,
    conn: Connection,
    notifications: Sequence[Notification],
) -> None:
    """Project ``notifications`` on ``conn`` and write them, all or nothing (see apply_decoded)."""
    apply_decoded(projection, conn, decode_all(reader, notifications))


def apply_decoded(projection: SqlProjection, conn: Connection, batch: Sequence[Decoded]) -> None:
    """Project decoded events on ``conn`` and write them, all or nothing.

    Raises EventFailed naming the event when one can be blamed, BatchFailed when only the batch
    can; the database's own failures (connection lost, lock timeouts) propagate unchanged,
    because retrying them later is right and stalling the view for them is not.
    """
    try:
        with _blamed_on(batch):
            projection.prepare([d.event for d in batch if d.event is not None], conn)
        for decoded in batch:
            _project(projection, decoded, conn)
        with _blamed_on(batch):
            projection.flush(conn)
    except BaseException:
        projection.discard()
        raise


def _project(projection: SqlProjection, decoded: Decoded, conn: Connection) -> None:
    if decoded.error is not None:
        raise EventFailed(decoded.position, decoded.error) from decoded.error
    assert decoded.event is not None
    try:
        projection.process_event(decoded.event, conn)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:  # the projection's bug or a bad event: isolate, report
        raise EventFailed(decoded.position, error) from error


@contextmanager
def _blamed_on(batch: Sequence[Decoded]) -> Iterator[None]:
    """For work done for a whole batch: a single event is to blame, else the batch is."""
    try:
        yield
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:  # a write or read the batch's events caused: find which one
        if len(batch) == 1:
            raise EventFailed(batch[0].position, error) from error
        raise BatchFailed(str(error)) from error


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    version: int
    position: int
    head: int
    state: str
    error: str | None
    error_position: int | None
    generation: int = 1
    lag_seconds: float | None = None
    building: int | None = None
    building_purpose: str | None = None
    building_position: int | None = None
    skipped: tuple[int, ...] = ()
    code_version: int | None = None
    # Knowledge views: (document id, reason) for each document whose text could not be had.
    failed_documents: tuple[tuple[str, str], ...] = ()

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def phase(self) -> str:
        """What an operator wants to know first: stalled, rebuilding, verifying or running.

        ``state`` stays the runner's own (running or stalled), so feeds keep their meaning.
        """
        if self.state == STALLED or self.building_purpose is None:
            return self.state
        if self.building_purpose.startswith("abandoned "):
            return self.building_purpose  # a build whose process died (projections/rebuild.py)
        return "rebuilding" if self.building_purpose == "rebuild" else "verifying"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag, "phase": self.phase, "skipped": self.skipped}


@dataclass(frozen=True)
class _Progress:
    position: int
    state: str
    error: str | None
    error_position: int | None


class ProjectionRunner:
    def __init__(
        self,
        projection: SqlProjection,
        reader: NotificationReader,
        engine: Engine,
        batch_size: int = 500,
    ) -> None:
        self.projection = projection
        self.reader = reader
        self.engine = engine
        self.batch_size = batch_size
        self.name = projection.name
        # The projection buffers a transaction's writes; one transaction at a time per process
        # (other processes are kept apart by the position claim).
        self._applying = threading.Lock()

    def setup(self) -> None:
        """Bring the views schema to the migrations' head and register this projection.

        Safe when several processes start at once: migrations are serialized by the database
        and the registration rows are inserted only if missing.
        """
        migrate(self.engine)
        with self.engine.begin() as conn:
            self.projection.create_schema(conn)
        with self.engine.begin() as conn:
            now = _now()
            _insert_missing(
                conn,
                projection_positions,
                name=self.name,
                version=self.projection.version,
                position=0,
                state=RUNNING,
                skipped="",
                updated_at=now,
            )
            _insert_missing(
                conn, projection_generations, name=self.name, generation=1, updated_at=now
            )

    def _row(self) -> Select[Any]:
        return select(projection_positions).where(projection_positions.c.name == self.name)

    def _progress(self) -> _Progress:
        """The cheap read the apply loop needs (status() also reads the log)."""
        with self.engine.connect() as conn:
            row = conn.execute(self._row()).one()
        return _Progress(row.position, row.state, row.error, row.error_position)

    def status(self) -> ProjectionStatus:
        with self.engine.connect() as conn:
            row = conn.execute(self._row()).one()
            generation = conn.execute(
                select(projection_generations).where(projection_generations.c.name == self.name)
            ).first()
        head = self.reader.head()
        return ProjectionStatus(
            name=self.name,
            version=row.version,
            position=row.position,
            head=head,
            state=row.state,
            error=row.error,
            error_position=row.error_position,
            generation=generation.generation if generation else 1,
            lag_seconds=self.lag_seconds(row.position, head),
            building=generation.building if generation else None,
            building_purpose=generation.purpose if generation else None,
            building_position=generation.building_position if generation else None,
            skipped=skipped_positions(row.skipped),
            code_version=self.projection.version,
        )

    def lag_seconds(self, position: int, head: int) -> float | None:
        """Seconds between the last applied event and the head event, by their timestamps.

        Before the first event is applied, the first event stands in for the last applied one.
        None when either timestamp cannot be read (the status of a stuck view must still show).
        """
        if position >= head:
            return 0.0
        applied = event_time(self.reader, max(position, 1))
        newest = event_time(self.reader, head)
        if applied is None or newest is None:
            return None
        return max(0.0, (newest - applied).total_seconds())

    @property
    def position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self._row()).one().position)

    def run_once(self) -> int:
        """Apply the next batch from the notification log; returns how many were applied."""
        progress = self._progress()
        if progress.state == STALLED:
            return 0
        return self.apply_batch(self.reader.read_after(progress.position, self.batch_size))

    def apply_batch(self, batch: Sequence[Notification]) -> int:
        """Apply notifications in order, skipping any at or below the stored position.

        Any feed may call this (the log itself, or a JetStream consumer): redelivered and old
        events are dropped by position, so every hop upstream may deliver at least once.
        """
        return self.apply(batch).applied

    def apply(self, batch: Sequence[Notification]) -> Applied:
        """``apply_batch``, also saying where the stored position is afterwards (which saves a
        feed reading it back after every batch)."""
        progress = self._progress()
        fresh = _strictly_rising(batch, progress.position)
        if progress.state == STALLED or not fresh:
            return Applied(0, progress.position)
        return self._apply_fresh(progress.position, decode_all(self.reader, fresh))

    def _apply_fresh(self, start: int, fresh: Sequence[Decoded]) -> Applied:
        with self._applying:
            try:
                with self.engine.begin() as conn:
                    if not self._claim(conn, start, fresh[-1].position):
                        return Applied(0, None)
                    apply_decoded(self.projection, conn, fresh)
            except (EventFailed, BatchFailed):
                return self._apply_one_by_one(start, fresh)
        return Applied(len(fresh), fresh[-1].position)

    def _claim(self, conn: Connection, expected: int, position: int) -> bool:
        """Move the position first, inside the view transaction.

        The conditional update takes the row (Postgres) or database (SQLite) write lock before any
        view row is touched, so a second runner of the same projection waits, then finds the
        position moved and backs off instead of applying the same events twice. A rebuild's
        switch takes the same lock, so it never interleaves with a batch.
        """
        claimed = conn.execute(
            update(projection_positions)
            .where(projection_positions.c.name == self.name)
            .where(projection_positions.c.position == expected)
            .values(position=position, updated_at=_now())
        )
        return claimed.rowcount == 1

    def _apply_one_by_one(self, start: int, batch: Sequence[Decoded]) -> Applied:
        position = start
        for count, decoded in enumerate(batch):
            try:
                with self.engine.begin() as conn:
                    if not self._claim(conn, position, decoded.position):
                        return Applied(count, None)
                    apply_decoded(self.projection, conn, [decoded])
            except EventFailed as failed:
                self._stall(decoded.position, failed.describe())
                return Applied(count, position)
            position = decoded.position
        return Applied(len(batch), position)

    def _stall(self, position: int, error: str) -> None:
        log.error("projection %s stalled at position %s: %s", self.name, position, error)
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(state=STALLED, error=error, error_position=position, updated_at=_now())
            )

    def retry(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(state=RUNNING, error=None, error_position=None, updated_at=_now())
            )

    def skip(self, position: int) -> None:
        """Operator's decision: step over the stalled event at ``position`` and record that."""
        progress = self._progress()
        if progress.state != STALLED or progress.error_position != position:
            raise ValueError(
                f"{self.name} is not stalled at position {position} "
                f"(state {progress.state}, stalled at {progress.error_position})"
            )
        with self.engine.begin() as conn:
            row = conn.execute(self._row()).one()
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(
                    position=position,
                    state=RUNNING,
                    error=None,
                    error_position=None,
                    skipped=f"{row.skipped}{position},",
                    updated_at=_now(),
                )
            )

    def catch_up(self, timeout: float = 60.0) -> int:
        """Apply everything up to the head as of now. Raises ProjectionStalled on a poison event."""
        target = self.reader.head()
        deadline = time.monotonic() + timeout
        while True:
            progress = self._progress()
            if progress.state == STALLED:
                raise ProjectionStalled(
                    f"{self.name} stalled at {progress.error_position}: {progress.error}"
                )
            if progress.position >= target:
                return progress.position
            if self.run_once() == 0 and self._progress().state != STALLED:
                return progress.position
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not reach {target} in {timeout}s")

    def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Read-your-writes: block until this view has applied ``position``."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while self.position < position:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not reach position {position} in {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        while not stop.is_set():
            applied = self.run_once()
            if applied == 0:
                stop.wait(poll_interval)


def skipped_positions(recorded: str) -> tuple[int, ...]:
    return tuple(int(p) for p in recorded.split(",") if p)


def event_time(reader: NotificationReader, position: int) -> datetime | None:
    """The timestamp of the event at ``position`` (or the next one, past a gap in the ids)."""
    found = reader.read_after(position - 1, 1)
    if not found:
        return None
    try:
        return _aware(reader.decode(found[0]).event.timestamp)
    except (TopicError, ValueError, KeyError) as error:
        log.warning("cannot read the time of the event at %s: %s", found[0].id, error)
        return None


def locked_row(conn: Connection, name: str) -> Row[Any]:
    """The projection's position row, write-locked until ``conn`` commits.

    The runner claims this row before applying a batch, so holding it pauses the runner of
    ``name`` in every process (and any JetStream feed) without stopping it.
    """
    touched = conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == name)
        .values(updated_at=_now())
    )
    if touched.rowcount != 1:
        raise LookupError(f"projection {name} has no position row: run setup() first")
    return conn.execute(
        select(projection_positions).where(projection_positions.c.name == name)
    ).one()


def _insert_missing(conn: Connection, table: Table, **values: Any) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    conn.execute(statement)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _now() -> datetime:
    return datetime.now(UTC)


def _strictly_rising(batch: Sequence[Notification], position: int) -> list[Notification]:
    """Keep each notification only if it is past everything before it.

    A feed that redelivers inside one batch (JetStream after a reconnect) would otherwise apply
    the same event twice, and one arriving out of order would move the position backwards.
    """
    fresh: list[Notification] = []
    for notification in batch:
        if notification.id > position:
            fresh.append(notification)
            position = notification.id
    return fresh
