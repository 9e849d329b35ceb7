"""Which process runs which role, as the processes themselves last said (with a heartbeat).

Each Janus process writes one row per role it runs (executor, scheduler, expiry, projections):
``running``, ``standby`` (waiting for the role's leader lock), ``failing`` (with the reason) or
``stopped``, and refreshes it every heartbeat. Readers (``/readyz``, ``janus projections
status``) summarise per role: a role is up only while some process says ``running`` and its
heartbeat is fresh; a process that was killed simply stops refreshing its rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, Row

from event_store.heartbeat import STALE_HEARTBEATS, aware

FORGET_AFTER = timedelta(days=1)

metadata = MetaData()

role_status_table = Table(
    "role_status",
    metadata,
    Column("role", String(100), primary_key=True),
    Column("instance", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("detail", Text),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_seconds", Float, nullable=False),
)


@dataclass(frozen=True)
class RoleState:
    state: str  # running | standby | failing | stopped
    detail: str | None
    since: datetime


@dataclass(frozen=True)
class RoleSummary:
    role: str
    ok: bool
    state: str
    text: str

    def as_dict(self) -> dict[str, object]:
        return {"role": self.role, "ok": self.ok, "state": self.state, "text": self.text}


class RoleBoard:
    """One process's rows: ``write`` them every heartbeat and on every change."""

    def __init__(self, engine: Engine, instance: str, heartbeat_seconds: float) -> None:
        self._engine = engine
        self.instance = instance
        self.heartbeat_seconds = heartbeat_seconds
        self._ready = False

    def write(self, states: dict[str, RoleState]) -> None:
        now = datetime.now(UTC)
        table = role_status_table
        if not self._ready:
            metadata.create_all(self._engine)
            with self._engine.begin() as conn:
                conn.execute(delete(table).where(table.c.updated_at < now - FORGET_AFTER))
            self._ready = True
        with self._engine.begin() as conn:
            for role, state in states.items():
                values = {
                    "state": state.state,
                    "detail": state.detail,
                    "since": state.since,
                    "updated_at": now,
                    "heartbeat_seconds": self.heartbeat_seconds,
                }
                mine = (table.c.role == role) & (table.c.instance == self.instance)
                if conn.execute(update(table).where(mine).values(values)).rowcount == 0:
                    conn.execute(insert(table).values(role=role, instance=self.instance, **values))


def read_roles(engine: Engine, now: datetime | None = None) -> list[RoleSummary]:
    """One summary per role any process has reported; empty when none ever did."""
    if not inspect(engine).has_table(role_status_table.name):
        return []
    with engine.connect() as conn:
        rows = conn.execute(select(role_status_table)).all()
    now = now or datetime.now(UTC)
    by_role: dict[str, list[_Row]] = {}
    for row in rows:
        by_role.setdefault(row.role, []).append(_Row.of(row, now))
    return [summarise(role, found) for role, found in sorted(by_role.items())]


@dataclass(frozen=True)
class _Row:
    instance: str
    state: str
    detail: str | None
    since: datetime
    updated_at: datetime
    fresh: bool

    @classmethod
    def of(cls, row: Row[Any], now: datetime) -> _Row:
        updated_at = aware(row.updated_at)
        # The staleness rule of every status row (relay, feeds): a row older than a few of its own
        # heartbeats belongs to a process that is gone.
        limit = timedelta(seconds=STALE_HEARTBEATS * row.heartbeat_seconds)
        since = aware(row.since)
        return cls(row.instance, row.state, row.detail, since, updated_at, now - updated_at < limit)


def summarise(role: str, rows: Iterable[_Row]) -> RoleSummary:
    rows = list(rows)
    fresh = [r for r in rows if r.fresh]
    running = [r for r in fresh if r.state == "running"]
    if running:
        waiting = sum(r.state == "standby" for r in fresh)
        extra = f", {waiting} standby" if waiting else ""
        return RoleSummary(role, True, "running", f"running on {running[0].instance}{extra}")
    failing = [r for r in fresh if r.state == "failing"]
    if failing:
        first = min(failing, key=lambda r: r.since)
        text = f"failing since {_when(first.since)}: {first.detail or 'unknown error'}"
        return RoleSummary(role, False, "failing", text)
    standby = [r for r in fresh if r.state == "standby"]
    if standby:
        first = min(standby, key=lambda r: r.since)
        text = f"not running: waiting for its leader lock since {_when(first.since)}"
        return RoleSummary(role, False, "standby", text)
    last = max(rows, key=lambda r: r.updated_at)
    since = last.since if last.fresh else last.updated_at
    return RoleSummary(role, False, "stopped", f"stopped since {_when(since)}")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
