"""The relational projection: routes each event to its aggregate's rows, through one batch.

What each aggregate's events do to its rows is in the module named after it (goals,
confirmations, jobs, documents, orders; the audit row of every event in audit); the tables are
in ``tables``, the read-through batch and bulk writer in ``batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from domain.base import JanusAggregate
from domain.command_record import CommandRecord
from domain.confirmation import Confirmation
from domain.document import Document
from domain.effect import Effect
from domain.goal import Goal
from domain.job import Job, JobFire
from domain.trade import TradeOrder
from event_store.reader import LoggedEvent
from projections.relational.audit import audit_row
from projections.relational.batch import Batch
from projections.relational.confirmations import ConfirmationRows, EffectRows
from projections.relational.documents import DocumentRows
from projections.relational.goals import GoalRows
from projections.relational.jobs import JobRows
from projections.relational.orders import OrderRows
from projections.relational.tables import LIVE, RelationalTables, relational_tables
from projections.sql_apply import RebuildableProjection

Apply = Callable[[LoggedEvent, str, Connection], None]


class Route(NamedTuple):
    """An aggregate's events, the table keyed by its id, and what its events do there."""

    events: type
    table: Table
    apply: Apply


class RelationalProjection(RebuildableProjection):
    """Version 2 added documents, orders, positions and jobs.next_fire_at; version 3 job-fired
    confirmations (job_id, fire_id), jobs.overlap and job_fires.confirmation_id; version 4
    documents' title, blob key, retraction reason and time (the pipeline columns went: whether
    a view indexed a document is that view's state)."""

    name = "relational"
    version = 4

    def __init__(self, tables: RelationalTables = LIVE) -> None:
        self.t = tables
        self.metadata = tables.goals.metadata
        self._batch = Batch()
        self._routes = _routes(tables, self._batch)
        self._applies: dict[type, Apply | None] = {}
        self._changes: dict[type, Table | None] = {}
        self._creates: dict[type, Table | None] = {}

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.t.all

    def at_generation(self, suffix: str) -> RelationalProjection:
        return RelationalProjection(relational_tables(MetaData(), suffix))

    def create_schema(self, conn: Connection) -> None:
        """The live tables belong to the migrations; other generations are made from the code."""
        if self.t.suffix:
            self.metadata.create_all(conn)

    def flush(self, conn: Connection) -> None:
        try:
            self._batch.flush(conn)
        finally:
            self._batch.clear()  # written or failed, the next transaction starts empty

    def discard(self) -> None:
        self._batch.clear()

    def prepare(self, events: Sequence[LoggedEvent], conn: Connection) -> None:
        """Read the rows a batch will change in one query per table, not one per event.

        Not the rows the batch itself creates before changing them (most of them, as an
        aggregate's first events tend to arrive together): those it finds in its own cache.
        """
        wanted: dict[Table, set[Any]] = {}
        created: set[tuple[Table, str]] = set()
        symbols: set[str] = set()
        for logged in events:
            table, key = self._row_of(logged.event)
            if table is not None and (table, key) not in created:
                wanted.setdefault(table, set()).add(key)
            new = self._table_created_by(type(logged.event))
            if new is not None:
                created.add((new, str(logged.originator_id)))
            if isinstance(logged.event, TradeOrder.Proposed):
                symbols.add(logged.event.symbol)
        for table, keys in wanted.items():
            self._batch.preload(conn, table, keys)
        # Second hop: the jobs of the fires, the positions of the orders.
        fires = self._batch.rows.get(self.t.job_fires, {}).values()
        jobs = {fire["job_id"] for fire in fires if fire is not None}
        self._batch.preload(conn, self.t.jobs, jobs)
        orders = self._batch.rows.get(self.t.orders, {}).values()
        symbols |= {order["symbol"] for order in orders if order is not None}
        self._batch.preload(conn, self.t.positions, symbols)

    def _row_of(self, event: Any) -> tuple[Table | None, str]:
        """The existing row an event changes (creations change none, fires their job)."""
        kind = type(event)
        if kind not in self._changes:
            self._changes[kind] = self._table_changed_by(kind)
        table = self._changes[kind]
        if table is None:
            return None, ""
        if table is self.t.jobs and issubclass(kind, JanusAggregate.Created):
            return table, str(event.job_id)
        return table, str(event.originator_id)

    def _table_created_by(self, kind: type) -> Table | None:
        """The table whose row an event of this kind inserts, keyed by its aggregate id."""
        if kind not in self._creates:
            created = issubclass(kind, JanusAggregate.Created)
            self._creates[kind] = self._aggregate_table(kind) if created else None
        return self._creates[kind]

    def _table_changed_by(self, kind: type) -> Table | None:
        if issubclass(kind, JobFire.Fired | JobFire.Missed):
            return self.t.jobs
        if issubclass(kind, JanusAggregate.Created):
            return None
        return self._aggregate_table(kind)

    def _aggregate_table(self, kind: type) -> Table | None:
        route = self._route(kind)
        return None if route is None else route.table

    def _route(self, kind: type) -> Route | None:
        return next((r for r in self._routes if issubclass(kind, r.events)), None)

    def process_event(self, logged: LoggedEvent, conn: Connection) -> None:
        event = logged.event
        if isinstance(event, CommandRecord.Event):
            return
        key = str(logged.originator_id)
        self._batch.append(self.t.audit, audit_row(logged, key))
        kind = type(event)
        if kind not in self._applies:
            route = self._route(kind)
            self._applies[kind] = None if route is None else route.apply
        apply = self._applies[kind]
        if apply is not None:
            apply(logged, key, conn)


def _routes(t: RelationalTables, batch: Batch) -> tuple[Route, ...]:
    jobs = JobRows(t, batch)
    return (
        Route(Goal.Event, t.goals, GoalRows(t, batch).apply),
        Route(Confirmation.Event, t.confirmations, ConfirmationRows(t, batch).apply),
        Route(Effect.Event, t.effects, EffectRows(t, batch).apply),
        Route(Job.Event, t.jobs, jobs.job),
        Route(JobFire.Event, t.job_fires, jobs.fire),
        Route(Document.Event, t.documents, DocumentRows(t, batch).apply),
        Route(TradeOrder.Event, t.orders, OrderRows(t, batch).apply),
    )
