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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from eventsourcing.persistence import Notification
from sqlalchemy import (
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
from sqlalchemy.engine import Connection, Engine

from event_store.reader import LoggedEvent, NotificationReader

log = logging.getLogger(__name__)

runtime_metadata = MetaData()

projection_positions = Table(
    "projection_positions",
    runtime_metadata,
    Column("name", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("error", Text),
    Column("error_position", Integer),
    Column("skipped", Text, nullable=False, default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class SqlProjection(ABC):
    name: ClassVar[str]
    version: ClassVar[int]
    metadata: ClassVar[MetaData]

    @abstractmethod
    def process_event(self, event: LoggedEvent, conn: Connection) -> None:
        """Apply one event's view changes on ``conn``. Ignored events need no code."""


class ProjectionStalled(RuntimeError):
    pass


class _Poison(Exception):
    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(position, error)
        self.position = position
        self.error = error

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    version: int
    position: int
    head: int
    state: str
    error: str | None
    error_position: int | None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


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

    def setup(self) -> None:
        runtime_metadata.create_all(self.engine)
        self.projection.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(self._row()).first() is None:
                conn.execute(
                    projection_positions.insert().values(
                        name=self.name,
                        version=self.projection.version,
                        position=0,
                        state="running",
                        skipped="",
                        updated_at=_now(),
                    )
                )

    def _row(self) -> Select[Any]:
        return select(projection_positions).where(projection_positions.c.name == self.name)

    def status(self) -> ProjectionStatus:
        with self.engine.connect() as conn:
            row = conn.execute(self._row()).one()
        return ProjectionStatus(
            name=self.name,
            version=row.version,
            position=row.position,
            head=self.reader.head(),
            state=row.state,
            error=row.error,
            error_position=row.error_position,
        )

    @property
    def position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self._row()).one().position)

    def run_once(self) -> int:
        """Apply the next batch from the notification log; returns how many were applied."""
        status = self.status()
        if status.state == "stalled":
            return 0
        return self.apply_batch(self.reader.read_after(status.position, self.batch_size))

    def apply_batch(self, batch: Sequence[Notification]) -> int:
        """Apply notifications in order, skipping any at or below the stored position.

        Any feed may call this (the log itself, or a JetStream consumer): redelivered and old
        events are dropped by position, so every hop upstream may deliver at least once.
        """
        status = self.status()
        fresh = [n for n in batch if n.id > status.position]
        if status.state == "stalled" or not fresh:
            return 0
        try:
            with self.engine.begin() as conn:
                if not self._claim(conn, status.position, fresh[-1].id):
                    return 0
                for notification in fresh:
                    self._apply(notification, conn)
        except _Poison:
            return self._apply_one_by_one(status.position, fresh)
        return len(fresh)

    def _apply(self, notification: Notification, conn: Connection) -> None:
        """Decode and project one event; any failure here is the event's, not the database's."""
        try:
            self.projection.process_event(self.reader.decode(notification), conn)
        except Exception as error:  # the projection's bug or a bad event: isolate, report
            raise _Poison(notification.id, error) from error

    def _claim(self, conn: Connection, expected: int, position: int) -> bool:
        """Move the position first, inside the view transaction.

        The conditional update takes the row (Postgres) or database (SQLite) write lock before any
        view row is touched, so a second runner of the same projection waits, then finds the
        position moved and backs off instead of applying the same events twice.
        """
        claimed = conn.execute(
            update(projection_positions)
            .where(projection_positions.c.name == self.name)
            .where(projection_positions.c.position == expected)
            .values(position=position, updated_at=_now())
        )
        return claimed.rowcount == 1

    def _apply_one_by_one(self, start: int, batch: Sequence[Notification]) -> int:
        position = start
        for count, notification in enumerate(batch):
            try:
                with self.engine.begin() as conn:
                    if not self._claim(conn, position, notification.id):
                        return count
                    self._apply(notification, conn)
            except _Poison as poison:
                self._stall(notification.id, poison.describe())
                return count
            position = notification.id
        return len(batch)

    def _stall(self, position: int, error: str) -> None:
        log.error("projection %s stalled at position %s: %s", self.name, position, error)
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(state="stalled", error=error, error_position=position, updated_at=_now())
            )

    def retry(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(state="running", error=None, error_position=None, updated_at=_now())
            )

    def skip(self, position: int) -> None:
        """Operator's decision: step over the stalled event at ``position`` and record that."""
        status = self.status()
        if status.state != "stalled" or status.error_position != position:
            raise ValueError(
                f"{self.name} is not stalled at position {position} "
                f"(state {status.state}, stalled at {status.error_position})"
            )
        with self.engine.begin() as conn:
            row = conn.execute(self._row()).one()
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(
                    position=position,
                    state="running",
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
            status = self.status()
            if status.state == "stalled":
                raise ProjectionStalled(
                    f"{self.name} stalled at {status.error_position}: {status.error}"
                )
            if status.position >= target:
                return status.position
            if self.run_once() == 0 and self.status().state != "stalled":
                return status.position
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


def _now() -> datetime:
    return datetime.now(UTC)
