"""Blue/green rebuilds and verify on both stores: readers never see a partial view."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from sqlalchemy import create_engine, inspect, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from bootstrap.container import Janus
from projections import relational
from projections.rebuild import (
    ProjectionBusy,
    RebuildFailed,
    UnknownProjection,
    rebuild,
    verify,
)
from projections.runner import ProjectionStalled, projection_generations
from tests.servers import wait_until
from tests.support.rebuild import (
    goal_with_confirmation,
    poison,
)

LIVE_TABLES = {t.name for t in relational.LIVE.all}


def table_names(janus: Janus) -> set[str]:
    return set(inspect(janus.views_engine).get_table_names())


# -- the story -----------------------------------------------------------------------------------


@dataclass
class Reader:
    """Reads the views as the CLI and API do, checking what a consistent view guarantees."""

    janus: Janus
    reads: int = 0
    problems: list[str] = field(default_factory=list)
    _last: tuple[int, int, int] = (0, 0, 0)

    # One statement, so one snapshot, on both stores.
    QUERY = text(
        "SELECT (SELECT count(*) FROM goals), (SELECT count(*) FROM decisions),"
        " (SELECT count(*) FROM confirmations),"
        " (SELECT count(*) FROM confirmations c LEFT JOIN goals g ON g.id = c.goal_id"
        "  WHERE g.id IS NULL)"
    )

    def check_once(self) -> None:
        with self.janus.views_engine.connect() as conn:
            goals, decisions, confirmations, orphans = conn.execute(self.QUERY).one()
        counts = (goals, decisions, confirmations)
        if any(now < before for now, before in zip(counts, self._last, strict=True)):
            self.problems.append(f"counts went back from {self._last} to {counts}")
        if goals == 0:
            self.problems.append("no goals at all")
        if orphans:
            self.problems.append(f"{orphans} confirmations without their goal")
        if not self.janus.views.goals(limit=1):  # the unchanged reader code
            self.problems.append("Views.goals() came back empty")
        self._last = counts
        self.reads += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.check_once()
            except DBAPIError as error:  # a missing table is a partial view too: record it
                self.problems.append(f"read failed: {str(error).splitlines()[0]}")
                self.reads += 1


@dataclass
class Writer:
    janus: Janus
    writes: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                goal_with_confirmation(self.janus, f"story {self.writes}")
                self.writes += 1
        except BaseException as error:  # reported by the test, not lost in the thread
            self.errors.append(error)
            raise


def start(target: Callable[[threading.Event], None], stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    return thread


INTERLEAVED_BATCHES = 5


def test_readers_never_see_a_partial_view_while_a_rebuild_switches_under_load(
    janus: Janus,
) -> None:
    for i in range(80):
        goal_with_confirmation(janus, f"before the rebuild {i}")
    janus.relational.catch_up()
    reader, writer = Reader(janus), Writer(janus)
    stop = threading.Event()
    threads = [
        start(lambda s: janus.relational.run_forever(s, 0.01), stop),
        start(writer.run, stop),
        start(reader.run, stop),
    ]

    interleaved: list[int] = []

    def commands_keep_arriving(_done: int, _total: int) -> None:
        # The first batches each wait for a new command; after that the build chases the head
        # as it would in production (waiting at every batch could keep it behind the writer).
        if len(interleaved) < INTERLEAVED_BATCHES:
            seen = writer.writes
            wait_until(lambda: writer.writes > seen or bool(writer.errors), message="a command")
            interleaved.append(writer.writes)

    try:
        result = rebuild(
            janus.projections, "relational", progress=commands_keep_arriving, batch_size=40
        )
        after_switch = reader.reads
        wait_until(lambda: reader.reads >= after_switch + 20, message="reads after the switch")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert not writer.errors
    assert reader.problems[:5] == []
    assert result.generation == 2
    assert len(interleaved) == INTERLEAVED_BATCHES, "commands kept arriving during the rebuild"
    janus.relational.catch_up()
    report = verify(janus.projections, "relational")
    assert report.ok, report.summary()
    assert janus.relational.status().generation == 2
    assert table_names(janus) >= LIVE_TABLES
    assert not any("__g" in name for name in table_names(janus))


def test_the_switch_applies_what_the_live_view_has_and_the_new_one_lacks(janus: Janus) -> None:
    for i in range(5):
        goal_with_confirmation(janus, f"early {i}")
    janus.relational.catch_up()
    late: list[int] = []

    def write_behind_the_build(done: int, total: int) -> None:
        if not late:  # after the build read its target, before it read the log
            late.extend(goal_with_confirmation(janus, f"late {i}") for i in range(3))
            janus.relational.catch_up()

    result = rebuild(janus.projections, "relational", progress=write_behind_the_build)

    assert result.position == late[-1] == janus.relational.position
    texts = {row["text"] for row in janus.views.goals(limit=100)}
    assert {"late 0", "late 1", "late 2", "early 0"} <= texts
    assert verify(janus.projections, "relational").ok


def test_verify_reports_missing_extra_and_changed_rows(janus: Janus) -> None:
    for i in range(4):
        goal_with_confirmation(janus, f"goal {i}")
    janus.relational.catch_up()
    assert verify(janus.projections, "relational").ok
    with janus.views_engine.begin() as conn:
        conn.execute(
            update(relational.goals)
            .where(relational.goals.c.text == "goal 1")
            .values(text="tampered")
        )
        victim = conn.execute(select(relational.confirmations.c.id).limit(1)).scalar_one()
        conn.execute(
            relational.confirmations.delete().where(relational.confirmations.c.id == victim)
        )
        row = dict(conn.execute(select(relational.audit).limit(1)).mappings().one())
        conn.execute(
            relational.audit.insert().values({**row, "position": 10_000, "event_id": str(uuid4())})
        )

    report = verify(janus.projections, "relational")

    assert not report.ok
    by_table = {d.table: d for d in report.differences()}
    assert set(by_table) == {"goals", "confirmations", "audit"}
    assert (by_table["goals"].changed, by_table["goals"].missing) == (1, 0)
    assert "tampered" in by_table["goals"].samples[0]
    assert (by_table["confirmations"].missing, by_table["confirmations"].extra) == (1, 0)
    assert victim in by_table["confirmations"].samples[0]
    assert (by_table["audit"].extra, by_table["audit"].changed) == (1, 0)
    assert "goals: 1 changed" in report.summary()
    assert not any("__g" in name for name in table_names(janus)), "the scratch build is dropped"


def test_a_rebuild_repairs_a_tampered_view(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()
    with janus.views_engine.begin() as conn:
        conn.execute(update(relational.goals).values(status="cancelled"))
    assert not verify(janus.projections, "relational").ok

    rebuild(janus.projections, "relational")

    assert verify(janus.projections, "relational").ok
    assert [g["status"] for g in janus.views.goals()] == ["submitted"]


def test_each_rebuild_is_a_new_generation_and_the_old_tables_are_dropped(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()
    for generation in (2, 3, 4):
        assert rebuild(janus.projections, "relational").generation == generation
        names = table_names(janus)
        assert names >= LIVE_TABLES
        assert not any("__g" in name for name in names)
    status = janus.relational.status()
    assert (status.generation, status.phase, status.lag) == (4, "running", 0)
    assert status.version == status.code_version


def test_status_says_rebuilding_while_a_build_runs(janus: Janus) -> None:
    for i in range(3):
        goal_with_confirmation(janus, f"goal {i}")
    seen: list[tuple[str, int | None]] = []

    def look(_done: int, _total: int) -> None:
        status = janus.relational.status()
        seen.append((status.phase, status.building))

    rebuild(janus.projections, "relational", progress=look, batch_size=2)

    assert seen and all(phase_and_gen == ("rebuilding", 2) for phase_and_gen in seen)
    assert janus.relational.status().phase == "running"
    assert janus.relational.status().building is None


def test_status_reports_lag_in_events_and_seconds_from_the_log(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()
    status = janus.relational.status()
    assert (status.lag, status.lag_seconds) == (0, 0.0)

    goal_with_confirmation(janus)
    status = janus.relational.status()

    assert status.lag == 3
    applied = janus.reader.decode(janus.reader.read_after(status.position - 1, 1)[0])
    newest = janus.reader.decode(janus.reader.read_after(status.head - 1, 1)[0])
    expected = (newest.event.timestamp - applied.event.timestamp).total_seconds()
    assert status.lag_seconds == pytest.approx(expected)
    assert status.lag_seconds > 0
    assert status.as_dict()["lag"] == 3


def test_a_rebuild_stops_at_a_poison_event_and_leaves_the_live_view(janus: Janus) -> None:
    goal_with_confirmation(janus, "before")
    bad = poison(janus)
    goal_with_confirmation(janus, "after")
    with pytest.raises(ProjectionStalled):
        janus.relational.catch_up()

    with pytest.raises(RebuildFailed, match=f"position {bad} cannot be projected"):
        rebuild(janus.projections, "relational", batch_size=2)

    status = janus.relational.status()
    assert (status.generation, status.phase, status.error_position) == (1, "stalled", bad)
    assert status.building is None
    assert not any("__g" in name for name in table_names(janus))
    assert [g["text"] for g in janus.views.goals()] == ["before"]


def test_a_recorded_skip_is_honoured_by_the_rebuild(janus: Janus) -> None:
    goal_with_confirmation(janus, "before")
    bad = poison(janus)
    goal_with_confirmation(janus, "after")
    with pytest.raises(ProjectionStalled):
        janus.relational.catch_up()
    janus.relational.skip(bad)
    janus.relational.catch_up()

    result = rebuild(janus.projections, "relational")

    assert result.position == janus.app.head()
    assert janus.relational.status().skipped == (bad,)
    assert {g["text"] for g in janus.views.goals()} == {"before", "after"}
    assert verify(janus.projections, "relational").ok


def test_a_rebuild_of_a_lagging_view_leaves_it_caught_up(janus: Janus) -> None:
    for i in range(3):
        goal_with_confirmation(janus, f"goal {i}")
    assert janus.relational.position == 0

    result = rebuild(janus.projections, "relational")

    assert result.position == janus.app.head() == janus.relational.position
    assert len(janus.views.goals()) == 3
    assert janus.relational.run_once() == 0


def test_only_one_rebuild_or_verify_at_a_time(janus: Janus) -> None:
    held = janus.leader_lock("projection-build.relational")
    assert held.try_acquire()
    try:
        with pytest.raises(ProjectionBusy, match="already running"):
            rebuild(janus.projections, "relational")
        with pytest.raises(ProjectionBusy):
            verify(janus.projections, "relational")
    finally:
        held.release()
    assert verify(janus.projections, "relational").ok


def test_what_a_crashed_build_left_behind_is_cleared_by_the_next(janus: Janus) -> None:
    goal_with_confirmation(janus)
    janus.relational.catch_up()
    crashed = relational.RelationalProjection().at_generation("__g7")
    with janus.views_engine.begin() as conn:
        crashed.metadata.create_all(conn)
        conn.execute(
            update(projection_generations)
            .where(projection_generations.c.name == "relational")
            .values(building=7, purpose="rebuild", building_position=1)
        )
    assert janus.relational.status().phase == "rebuilding"

    rebuild(janus.projections, "relational")

    assert not any("__g" in name for name in table_names(janus))
    status = janus.relational.status()
    assert (status.phase, status.building, status.generation) == ("running", None, 2)


def test_unknown_projections_are_named_in_the_error(janus: Janus) -> None:
    with pytest.raises(
        UnknownProjection, match=r"'nope' \(known: graph, objects, relational, vector\)"
    ):
        rebuild(janus.projections, "nope")
    with pytest.raises(UnknownProjection):
        verify(janus.projections, "nope")


def test_on_postgres_a_read_that_waits_for_the_switch_reads_what_it_committed(
    pg_url: str,
) -> None:
    """What the switch relies on: a statement that waited for the renames takes its snapshot
    after them, so it also sees the rows the switch's own transaction applied."""
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t SELECT generate_series(1, 3)"))
        conn.execute(text("CREATE TABLE t_next (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t_next SELECT generate_series(1, 4)"))
    seen: list[int] = []
    with engine.connect() as switch:
        switch.execute(text("INSERT INTO t_next VALUES (5)"))  # the tail, under the lock
        switch.execute(text("ALTER TABLE t RENAME TO t_old"))
        switch.execute(text("ALTER TABLE t_next RENAME TO t"))

        def read() -> None:
            with engine.connect() as conn:
                seen.append(conn.execute(text("SELECT count(*) FROM t")).scalar_one())

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: _waiting_for_locks(engine) > 0, message="the reader to wait")
        switch.commit()
        reader.join(timeout=10)
    engine.dispose()
    assert seen == [5]


def _waiting_for_locks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
