"""The relational views' tables: goals, decisions, confirmations, effects, jobs, fires, the audit
trail, documents, trade orders and the positions their fills add up to.

Tables come from a factory, ``relational_tables(metadata, suffix)``, so that a rebuild can create
the next generation (``goals__g3``, ...) beside the live tables. Every index and constraint is
named after its physical table, so two generations never collide on a name in one schema; after
a switch the live ``goals`` keeps the index names it was built with (``ix_goals__g3_...``).
Migrations (projections/migrations) create generation one; a test holds the two to the same shape.

Readers (``projections.queries``, the CLI, replay) import the live tables from here by their
stable names; nothing here imports the domain or the projection runtime's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from projections.positions import POSITION

ID = String(36)
# Free text the domain does not bound to a length (actors, command ids, correlation ids, names a
# broker or an extractor chose) is TEXT: a value the domain accepted must never stall a view.
# Counts and sizes that can pass 2**31 are 64-bit, like log positions.
BIG = POSITION
# Quantities have at most 12 integer and 8 decimal digits (commands/models.py); averages keep 12.
DECIMAL_PLACES = 12
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC on Postgres; text on SQLite, which would otherwise round through a float."""

    impl = Numeric(38, DECIMAL_PLACES)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, DECIMAL_PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else plain(Decimal(value))


def plain(value: Decimal) -> Decimal:
    """Without trailing zeros or an exponent: NUMERIC(38, 12) hands back 10.000000000000."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def exact(value: Decimal) -> Decimal:
    return plain(value.quantize(_QUANTUM))


@dataclass(frozen=True)
class RelationalTables:
    """One generation of the relational views. ``suffix`` is "" for the live tables."""

    suffix: str
    goals: Table
    decisions: Table
    confirmations: Table
    effects: Table
    jobs: Table
    job_fires: Table
    audit: Table
    documents: Table
    orders: Table
    positions: Table

    @property
    def all(self) -> tuple[Table, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "suffix")


# One table of a generation: its base name, its columns and the column tuples it is indexed on.
MakeTable = Callable[..., Table]


def relational_tables(metadata: MetaData, suffix: str = "") -> RelationalTables:
    def table(base: str, *columns: Column[Any], indexes: tuple[tuple[str, ...], ...] = ()) -> Table:
        name = base + suffix
        named = [Index(f"ix_{name}_{'_'.join(cols)}", *cols) for cols in indexes]
        return Table(name, metadata, *columns, *named)

    return RelationalTables(
        suffix=suffix,
        goals=_goals(table),
        decisions=_decisions(table),
        confirmations=_confirmations(table),
        effects=_effects(table),
        jobs=_jobs(table),
        job_fires=_job_fires(table),
        audit=_audit(table),
        documents=_documents(table),
        orders=_orders(table),
        positions=_positions(table),
    )


def _goals(table: MakeTable) -> Table:
    return table(
        "goals",
        Column("id", ID, primary_key=True),
        Column("text", Text, nullable=False),
        Column("submitted_by", String(200), nullable=False),
        Column("priority", Integer, nullable=False),
        Column("status", String(20), nullable=False),
        Column("latest_decision_id", ID),
        Column("latest_action", Text),
        Column("outcome", Text),
        Column("submitted_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        indexes=(("status", "submitted_at"),),
    )


def _decisions(table: MakeTable) -> Table:
    # Keyed by the event's position: a decision id is unique within its goal only (the
    # domain allows a client's id again on another goal), so it cannot key this view.
    return table(
        "decisions",
        Column("decision_id", ID, nullable=False),
        Column("goal_id", ID, nullable=False),
        Column("model", String(200), nullable=False),
        Column("action", JSON, nullable=False),
        Column("context_ids", JSON, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("position", POSITION, primary_key=True, autoincrement=False),
        indexes=(("goal_id",), ("decision_id",)),
    )


def _confirmations(table: MakeTable) -> Table:
    return table(
        "confirmations",
        Column("id", ID, primary_key=True),
        # A job's fire requests without a goal or decision (then job_id and fire_id).
        Column("goal_id", ID),
        Column("decision_id", ID),
        Column("job_id", ID),
        Column("fire_id", ID),
        Column("action", String(200), nullable=False),
        Column("parameters", JSON, nullable=False),
        Column("hazard", String(10), nullable=False),
        Column("status", String(20), nullable=False),
        Column("requested_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Column("decided_by", Text),
        Column("decided_at", DateTime(timezone=True)),
        Column("reason", Text),
        indexes=(("goal_id",), ("status", "expires_at")),
    )


def _effects(table: MakeTable) -> Table:
    return table(
        "effects",
        Column("id", ID, primary_key=True),
        Column("confirmation_id", ID, nullable=False, unique=True),
        Column("goal_id", ID),
        Column("action", Text, nullable=False),
        Column("status", String(20), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("result", JSON),
        Column("error", Text),
        Column("happened", Boolean),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        indexes=(("goal_id",), ("status", "started_at")),
    )


def _jobs(table: MakeTable) -> Table:
    return table(
        "jobs",
        Column("id", ID, primary_key=True),
        Column("name", String(200), nullable=False),
        Column("trigger", JSON, nullable=False),
        Column("action", JSON, nullable=False),
        Column("misfire_policy", String(20), nullable=False),
        Column("overlap", String(20), nullable=False, server_default="skip"),
        Column("max_catch_up", Integer, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("status", String(20), nullable=False),
        Column("scheduled_at", DateTime(timezone=True), nullable=False),
        Column("last_scheduled_for", DateTime(timezone=True)),
        Column("last_outcome", String(20)),
        Column("fired_count", Integer, nullable=False, default=0),
        Column("succeeded_count", Integer, nullable=False, default=0),
        Column("failed_count", Integer, nullable=False, default=0),
        Column("missed_count", Integer, nullable=False, default=0),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("next_fire_at", DateTime(timezone=True)),
        indexes=(("status",), ("status", "next_fire_at")),
    )


def _job_fires(table: MakeTable) -> Table:
    return table(
        "job_fires",
        Column("id", ID, primary_key=True),
        Column("job_id", ID, nullable=False),
        Column("scheduled_for", DateTime(timezone=True), nullable=False),
        Column("manual", Boolean, nullable=False),
        Column("status", String(20), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("error", Text),
        Column("confirmation_id", ID),
        Column("next_retry_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        indexes=(("status",), ("job_id", "scheduled_for")),
    )


def _audit(table: MakeTable) -> Table:
    return table(
        "audit",
        Column("position", POSITION, primary_key=True, autoincrement=False),
        Column("event_id", ID, nullable=False, unique=True),
        Column("event_type", String(100), nullable=False),
        Column("aggregate_id", ID, nullable=False),
        Column("aggregate_version", Integer, nullable=False),
        Column("correlation_id", Text, nullable=False),
        Column("causation_id", Text, nullable=False),
        Column("command_id", Text, nullable=False),
        Column("actor", Text, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("summary", Text, nullable=False),
        indexes=(("aggregate_id",), ("correlation_id", "position"), ("recorded_at",)),
    )


def _documents(table: MakeTable) -> Table:
    return table(
        "documents",
        Column("id", ID, primary_key=True),
        Column("source_uri", Text, nullable=False),
        Column("title", Text, nullable=False),
        Column("content_type", String(200), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("size_bytes", BIG, nullable=False),
        Column("status", String(20), nullable=False),
        Column("blob_key", Text, nullable=False),
        Column("retraction_reason", Text),
        Column("retracted_at", DateTime(timezone=True)),
        Column("registered_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        indexes=(("status", "registered_at"), ("sha256",)),
    )


def _orders(table: MakeTable) -> Table:
    return table(
        "orders",
        Column("id", ID, primary_key=True),
        Column("goal_id", ID),
        Column("symbol", String(16), nullable=False),
        Column("side", String(4), nullable=False),
        Column("quantity", ExactDecimal, nullable=False),
        Column("limit_price", ExactDecimal),
        Column("status", String(20), nullable=False),
        Column("filled_quantity", ExactDecimal, nullable=False),
        Column("average_fill_price", ExactDecimal),
        Column("fill_count", Integer, nullable=False),
        Column("broker_order_id", Text),
        Column("risk_passed", Boolean),
        Column("risk_violations", JSON),
        Column("reason", Text),
        Column("proposed_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        indexes=(("status", "proposed_at"), ("symbol",), ("goal_id",)),
    )


def _positions(table: MakeTable) -> Table:
    return table(
        "positions",
        Column("symbol", String(16), primary_key=True),
        Column("quantity", ExactDecimal, nullable=False),
        Column("average_cost", ExactDecimal, nullable=False),
        Column("realized_pnl", ExactDecimal, nullable=False),
        Column("fill_count", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


metadata = MetaData()
LIVE = relational_tables(metadata)
# The live tables under their stable names: readers (queries.py, the CLI) only ever use these.
goals = LIVE.goals
decisions = LIVE.decisions
confirmations = LIVE.confirmations
effects = LIVE.effects
jobs = LIVE.jobs
job_fires = LIVE.job_fires
audit = LIVE.audit
documents = LIVE.documents
orders = LIVE.orders
positions = LIVE.positions
