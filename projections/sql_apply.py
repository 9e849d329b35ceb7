"""What a SQL projection is, and how a batch of events is applied to it: all or nothing, with
the event to blame named when one fails.

The live runner (projections/runner.py) and rebuild/verify (projections/generation_build.py)
apply batches the same way; they differ only in where the position is recorded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, NamedTuple

from eventsourcing.persistence import Notification
from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from event_store.reader import LoggedEvent, NotificationReader


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


def decode_all(reader: NotificationReader, notifications: Sequence[Notification]) -> list[Decoded]:
    decoded = []
    for notification in notifications:
        try:
            decoded.append(Decoded(notification.id, reader.decode(notification)))
        except Exception as error:  # noqa: BLE001 - raised as EventFailed when its turn comes
            decoded.append(Decoded(notification.id, error=error))
    return decoded


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
