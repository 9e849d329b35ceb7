"""What anyone can see of a relay: its status row, the status read back, its outages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table, Text
from sqlalchemy.engine import Engine

from event_store.application import JanusApplication
from event_store.heartbeat import aware, is_alive, read_status_row
from event_store.reader import NotificationReader

log = logging.getLogger("janus.relay")

status_metadata = MetaData()

relay_status_table = Table(
    "relay_status",
    status_metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def tracking_name(stream_name: str) -> str:
    return f"relay:{stream_name}"


@dataclass(frozen=True)
class RelayStatus:
    """Where the relay is: ``position`` is the saved one, the point a restart resumes from."""

    name: str
    position: int
    head: int
    state: str
    connected: bool
    last_error: str | None
    updated_at: datetime | None = None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


def read_relay_status(
    app: JanusApplication,
    reader: NotificationReader,
    status_engine: Engine,
    stream_name: str,
    heartbeat_seconds: float = 5.0,
) -> RelayStatus:
    """The relay's status from the store, as any process (``janus projections status``) sees it.

    ``state`` and ``connected`` are as the relay last reported them; a report older than a few
    heartbeats means no relay is running (it was killed), so the status says ``stopped``.
    """
    name = tracking_name(stream_name)
    position = app.tracked_position(name)
    head = reader.head()
    row = read_status_row(status_engine, relay_status_table, name)
    if row is None:
        return RelayStatus(name, position, head, "never-run", False, None)
    updated_at = aware(row.updated_at)
    alive = is_alive(updated_at, heartbeat_seconds)
    state = row.state if alive else "stopped"
    connected = bool(row.connected) and alive
    return RelayStatus(name, position, head, state, connected, row.error, updated_at)


class Outages:
    """One log line when something becomes unavailable and one when it is back, not per retry."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._since: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._on_change = on_change

    @property
    def last_error(self) -> str | None:
        return next(reversed(self._errors.values()), None)

    def begin(self, what: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else describe(error)
        if self._errors.get(what) == f"{what}: {text}":
            return
        self._errors[what] = f"{what}: {text}"
        if what not in self._since:
            self._since[what] = time.monotonic()
            log.warning("relay: %s unavailable: %s", what, text)
        self._on_change()

    def end(self, what: str) -> None:
        since = self._since.pop(what, None)
        if since is None:
            return
        self._errors.pop(what, None)
        log.info("relay: %s back after %.1fs", what, time.monotonic() - since)
        self._on_change()

    def active(self, what: str) -> bool:
        return what in self._since


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
