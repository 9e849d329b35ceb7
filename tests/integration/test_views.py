"""The relational views and their migrations on both stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, select, text
from sqlalchemy.engine import Engine

from adapters.timer import fire_time
from bootstrap.container import Janus
from commands import models as m
from domain.job import JobFire
from domain.meta import Actor, ActorKind, CommandContext
from domain.trade import Side
from projections import relational
from projections.migrations import VERSION_TABLE, current, downgrade, head, migrate
from projections.relational import apply_fill, relational_tables
from projections.runner import runtime_metadata
from tests.support.commands import as_alice

SHA = "ab" * 32
CTX = CommandContext("test", "test", "test", Actor(ActorKind.SYSTEM, "test"), "local")


# -- documents -----------------------------------------------------------------------------------


def test_the_documents_view_follows_a_document_until_it_is_retracted(janus: Janus) -> None:
    registered = janus.commands.register_document(
        m.RegisterDocument(
            source_uri="file:///inbox/a.pdf",
            content_type="application/pdf",
            sha256=SHA,
            size_bytes=1234,
        ),
        as_alice(),
    )
    janus.relational.catch_up()
    [row] = janus.views.documents()
    assert (row["status"], row["sha256"], row["size_bytes"]) == ("registered", SHA, 1234)
    assert row["blob_key"] == f"sha256/ab/{SHA}"

    janus.commands.retract_document(
        m.RetractDocument(document_id=registered.aggregate_id, reason="superseded"), as_alice()
    )
    janus.relational.catch_up()
    [row] = janus.views.documents(status="retracted")
    assert row["retraction_reason"] == "superseded"
    assert row["retracted_at"] is not None
    assert janus.views.documents(status="registered") == []


def test_the_same_bytes_from_the_same_source_are_one_document(janus: Janus) -> None:
    cmd = m.RegisterDocument(
        source_uri="file:///inbox/b.pdf", content_type="application/pdf", sha256=SHA, size_bytes=1
    )
    first = janus.commands.register_document(cmd, as_alice())
    again = janus.commands.register_document(cmd, as_alice())
    elsewhere = janus.commands.register_document(
        cmd.model_copy(update={"source_uri": "file:///inbox/c.pdf"}), as_alice()
    )
    assert again.aggregate_id == first.aggregate_id
    assert elsewhere.aggregate_id != first.aggregate_id
    janus.relational.catch_up()
    assert len(janus.views.documents()) == 2


# -- orders and positions ------------------------------------------------------------------------


def order(janus: Janus, symbol: str, side: Side, quantity: str, *fills: tuple[str, str]) -> UUID:
    """Propose, risk-check and submit an order, then record its fills."""
    proposed = janus.commands.propose_order(
        m.ProposeOrder(symbol=symbol, side=side, quantity=Decimal(quantity)), as_alice()
    )
    oid = proposed.aggregate_id
    janus.commands.record_risk_check(m.RecordRiskCheck(order_id=oid, passed=True), as_alice())
    janus.commands.submit_order(m.SubmitOrder(order_id=oid, broker_order_id=f"b-{oid}"), as_alice())
    for number, (qty, price) in enumerate(fills):
        janus.commands.record_fill(
            m.RecordFill(
                order_id=oid,
                fill_id=f"{oid}-{number}",
                quantity=Decimal(qty),
                price=Decimal(price),
            ),
            as_alice(),
        )
    return oid


def test_orders_show_fills_and_positions_add_buys_and_subtract_sells(janus: Janus) -> None:
    bought = order(janus, "ACME", Side.BUY, "10", ("4", "100"), ("6", "110"))
    order(janus, "ACME", Side.SELL, "4", ("4", "120"))
    order(janus, "BETA", Side.BUY, "3", ("1", "9.5"))
    janus.relational.catch_up()

    [acme, beta] = janus.views.positions()
    assert (acme["symbol"], acme["quantity"], acme["average_cost"]) == ("ACME", 6, 106)
    assert acme["realized_pnl"] == Decimal(56)  # 4 sold at 120 against a cost of 106
    assert acme["fill_count"] == 3
    assert (beta["quantity"], beta["average_cost"]) == (Decimal(1), Decimal("9.5"))

    [row] = [o for o in janus.views.orders(symbol="ACME") if o["id"] == str(bought)]
    assert (row["status"], row["filled_quantity"], row["fill_count"]) == ("filled", 10, 2)
    assert row["average_fill_price"] == Decimal(106)
    assert row["risk_passed"] is True
    partial = janus.views.orders(status="partially_filled")
    assert [(o["symbol"], o["filled_quantity"]) for o in partial] == [("BETA", Decimal(1))]


def test_a_position_can_go_through_zero_and_short(janus: Janus) -> None:
    order(janus, "ACME", Side.BUY, "2", ("2", "10"))
    order(janus, "ACME", Side.SELL, "5", ("5", "12"))
    janus.relational.catch_up()
    [acme] = janus.views.positions()
    assert (acme["quantity"], acme["average_cost"], acme["realized_pnl"]) == (-3, 12, 4)

    order(janus, "ACME", Side.BUY, "3", ("3", "11"))
    janus.relational.catch_up()
    assert janus.views.positions() == []
    [flat] = janus.views.positions(include_flat=True)
    assert (flat["quantity"], flat["average_cost"], flat["realized_pnl"]) == (0, 0, 7)


def test_fractional_costs_keep_their_digits(janus: Janus) -> None:
    order(janus, "ACME", Side.BUY, "3", ("1", "10"), ("1", "10"), ("1", "10.00000001"))
    janus.relational.catch_up()
    [acme] = janus.views.positions()
    assert acme["average_cost"] == Decimal("10.000000003333")
    assert acme["quantity"] == 3


def test_position_arithmetic() -> None:
    zero = Decimal(0)
    assert apply_fill(zero, zero, zero, Decimal(2), Decimal(10)) == (2, 10, 0)
    assert apply_fill(Decimal(2), Decimal(10), zero, Decimal(2), Decimal(20)) == (4, 15, 0)
    assert apply_fill(Decimal(4), Decimal(15), zero, Decimal(-1), Decimal(20)) == (3, 15, 5)
    assert apply_fill(Decimal(3), Decimal(15), Decimal(5), Decimal(-3), Decimal(10)) == (0, 0, -10)
    assert apply_fill(Decimal(-2), Decimal(10), zero, Decimal(-2), Decimal(20)) == (-4, 15, 0)
    assert apply_fill(Decimal(-4), Decimal(15), zero, Decimal(1), Decimal(5)) == (-3, 15, 10)


# -- jobs ----------------------------------------------------------------------------------------


def test_jobs_show_their_next_fire_time_as_the_scheduler_computes_it(janus: Janus) -> None:
    scheduled = janus.commands.schedule_job(
        m.ScheduleJob(
            name="heartbeat",
            trigger={"kind": "interval", "seconds": 60},
            action={"name": "notify"},
        ),
        as_alice(),
    )
    janus.relational.catch_up()
    [job] = janus.views.active_jobs()
    minute = timedelta(seconds=60)
    assert _next_fire(janus) == fire_time(job.scheduled_at + minute)

    first = fire_time(job.scheduled_at + minute)
    janus.app.save(JobFire.fire(scheduled.aggregate_id, first, False, CTX))
    janus.relational.catch_up()
    assert _next_fire(janus) == fire_time(job.scheduled_at + 2 * minute)

    janus.commands.pause_job(m.PauseJob(job_id=scheduled.aggregate_id), as_alice())
    janus.relational.catch_up()
    assert _next_fire(janus) is None

    janus.commands.resume_job(m.ResumeJob(job_id=scheduled.aggregate_id), as_alice())
    janus.relational.catch_up()
    resumed_at = janus.app.repository.get(scheduled.aggregate_id).resumed_at
    # The first scheduled time after both the resume and the last fire: none inside the pause.
    after = max(resumed_at, first) + timedelta(milliseconds=1)  # fire times keep milliseconds
    periods = (after - job.scheduled_at) // minute + 1
    assert _next_fire(janus) == fire_time(job.scheduled_at + periods * minute)


def test_a_one_off_job_has_no_next_fire_after_it_fired(janus: Janus) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    scheduled = janus.commands.schedule_job(
        m.ScheduleJob(
            name="once", trigger={"kind": "date", "run_at": run_at}, action={"name": "notify"}
        ),
        as_alice(),
    )
    janus.relational.catch_up()
    assert _next_fire(janus) == fire_time(run_at)
    janus.app.save(JobFire.fire(scheduled.aggregate_id, run_at, False, CTX))
    janus.relational.catch_up()
    assert _next_fire(janus) is None


def _next_fire(janus: Janus) -> datetime | None:
    with janus.views_engine.connect() as conn:
        value = conn.execute(select(relational.jobs.c.next_fire_at)).scalar_one()
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


# -- audit and indexes ---------------------------------------------------------------------------


def test_the_audit_trail_reads_by_correlation_and_by_time(janus: Janus) -> None:
    first = janus.commands.submit_goal(m.SubmitGoal(text="one"), as_alice())
    janus.commands.submit_goal(m.SubmitGoal(text="two"), as_alice())
    janus.relational.catch_up()
    story = janus.views.audit(correlation_id=str(first.aggregate_id))
    assert [r["event_type"] for r in story] == ["Goal.Submitted"]
    everything = janus.views.audit(since=datetime.now(UTC) - timedelta(minutes=5))
    assert len(everything) == 2
    assert janus.views.audit(since=datetime.now(UTC) + timedelta(minutes=5)) == []


def indexed(engine: Engine, table: str) -> set[tuple[str, ...]]:
    return {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(table)}


def test_the_queries_the_cli_and_api_make_have_indexes(janus: Janus) -> None:
    engine = janus.views_engine
    assert ("status", "expires_at") in indexed(engine, "confirmations")
    assert ("status", "submitted_at") in indexed(engine, "goals")
    assert ("status", "started_at") in indexed(engine, "effects")
    assert {("correlation_id", "position"), ("recorded_at",)} <= indexed(engine, "audit")
    assert ("job_id", "scheduled_for") in indexed(engine, "job_fires")
    assert ("status", "next_fire_at") in indexed(engine, "jobs")
    assert ("status", "proposed_at") in indexed(engine, "orders")


# -- bulk inserts ---------------------------------------------------------------------------------


def test_bulk_inserts_store_each_value_as_a_plain_insert_does(janus: Janus) -> None:
    """Postgres takes a batch's new rows by binary COPY; a batch holding a value binary cannot
    write as text would (a naive datetime, a number in a text column) goes as text instead."""
    aware = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    naive = datetime(2026, 1, 2, 3, 4, 5)

    def goal(gid: str, at: object, text: object = "t") -> dict[str, object]:
        return {
            "id": gid,
            "text": text,
            "submitted_by": "me",
            "priority": 3,
            "status": "submitted",
            "latest_decision_id": None,
            "latest_action": None,
            "outcome": None,
            "submitted_at": at,
            "updated_at": at,
        }

    batches = [
        [goal("binary-1", aware), goal("binary-2", aware, "two")],
        [goal("naive-1", aware), goal("naive-2", naive)],
        [goal("number-1", aware, 5)],
    ]
    table = relational.goals
    with janus.views_engine.begin() as conn:
        for rows in batches:
            relational._insert_many(conn, table, rows)
            for row in rows:  # the same values again, as SQLAlchemy inserts them
                plain = goal(f"plain-{row['id']}", row["submitted_at"], row["text"])
                conn.execute(table.insert().values(plain))
        stored = {r.id: r for r in conn.execute(select(table))}
    for rows in batches:
        for row in rows:
            bulk, plain = stored[row["id"]], stored[f"plain-{row['id']}"]
            assert bulk._asdict() | {"id": None} == plain._asdict() | {"id": None}
    assert stored["binary-2"].submitted_at.astimezone(UTC) == aware
    assert stored["number-1"].text == "5"


# -- migrations ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database nothing has touched yet."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'views.sqlite'}"
        engine = create_engine(url, connect_args={"timeout": 30})
    else:
        pg_url: str = request.getfixturevalue("pg_url")
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        yield engine
    finally:
        engine.dispose()


def drift(engine: Engine) -> list[object]:
    """What the code's tables have that the migrated database lacks, or the reverse."""
    expected = MetaData()
    relational_tables(expected)
    for table in runtime_metadata.tables.values():
        table.to_metadata(expected)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        return list(compare_metadata(context, expected))


def test_migrations_from_an_empty_database_give_the_tables_the_code_declares(
    empty: Engine,
) -> None:
    migrate(empty)
    with empty.connect() as conn:
        assert current(conn) == {head()}
    assert drift(empty) == []


def test_migrating_again_changes_nothing(empty: Engine) -> None:
    migrate(empty)
    before = {t: indexed(empty, t) for t in inspect(empty).get_table_names()}
    migrate(empty)
    migrate(empty, "heads")  # past the fast path: Alembic itself finds nothing to do
    assert {t: indexed(empty, t) for t in inspect(empty).get_table_names()} == before
    assert drift(empty) == []


def test_migrations_go_down_and_up_again(empty: Engine) -> None:
    migrate(empty)
    downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) == {VERSION_TABLE}
    migrate(empty)
    assert drift(empty) == []


def test_an_upgrade_keeps_the_rows_of_the_first_schema(empty: Engine) -> None:
    migrate(empty, "0001")
    now = datetime.now(UTC)
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO goals (id, text, submitted_by, priority, status, submitted_at,"
                " updated_at) VALUES ('g1', 'kept', 'alice', 5, 'submitted', :now, :now)"
            ),
            {"now": now},
        )
    migrate(empty)
    with empty.connect() as conn:
        assert conn.execute(text("SELECT text FROM goals")).scalar_one() == "kept"
    assert drift(empty) == []


def test_documents_from_before_0005_get_titles_blob_keys_and_retraction_reasons(
    empty: Engine,
) -> None:
    migrate(empty, "0004")
    now = datetime.now(UTC)
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO documents (id, source_uri, content_type, sha256, size_bytes, status,"
                " error, registered_at, updated_at) VALUES ('d1', 'file:///inbox/a.pdf',"
                " 'application/pdf', :sha, 1, 'retracted', 'superseded', :now, :now)"
            ),
            {"sha": SHA, "now": now},
        )
    migrate(empty)
    with empty.connect() as conn:
        row = conn.execute(text("SELECT * FROM documents")).mappings().one()
    assert (row["title"], row["blob_key"]) == ("a.pdf", f"sha256/ab/{SHA}")
    assert (row["status"], row["retraction_reason"]) == ("retracted", "superseded")
    assert row["retracted_at"] is not None
    assert "error" not in row
    downgrade(empty, "0004")
    with empty.connect() as conn:
        assert conn.execute(text("SELECT error FROM documents")).scalar_one() == "superseded"


def test_a_database_made_before_migrations_is_adopted(empty: Engine) -> None:
    migrate(empty, "0001")
    with empty.begin() as conn:  # what create_all left behind: the tables, no version
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    migrate(empty)
    with empty.connect() as conn:
        assert current(conn) == {head()}
    assert drift(empty) == []


def test_processes_starting_together_migrate_once(empty: Engine) -> None:
    engines = [create_engine(empty.url, connect_args=_connect_args(empty)) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start_up(engine: Engine) -> None:
        try:
            start.wait()
            migrate(engine)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
            raise

    threads = [threading.Thread(target=start_up, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()

    assert errors == []
    with empty.connect() as conn:
        assert current(conn) == {head()}
    assert drift(empty) == []


def _connect_args(engine: Engine) -> dict[str, object]:
    return {"timeout": 30} if engine.dialect.name == "sqlite" else {}
