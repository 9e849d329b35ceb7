"""Blue/green rebuilds of SQL projections from the event store's log, and verification.

``rebuild(projections, name)`` builds generation N+1 of a projection's tables (``goals__g4``, ...)
beside the live ones, reading the notification log (never JetStream) in large batches. Once it
has caught up it switches, in one transaction that:

1. write-locks the projection's position row. The live runner claims that row before every
   batch, so from here no batch of the live view can commit, in any process or feed;
2. applies the events the live view has and the new generation still lacks: both now stand at
   the same position;
3. renames each live table to ``<name>__g<N>`` and each new one to the live name, and records
   generation N+1 and the position;

and then drops generation N.

Readers never see a half-built view because they only read tables by their live names, which
name generation N until the switch commits and the complete, caught-up generation N+1 after it;
renames are transactional on both Postgres and SQLite. On Postgres a reader's statement that
meets the switch waits for its ACCESS EXCLUSIVE locks, then looks the names up again and takes
its snapshot after the commit (READ COMMITTED, one statement per read, as ``Views`` reads); the
switch takes those locks all at once or not at all (NOWAIT, retried), so it never deadlocks with
a reader. On SQLite (WAL) a reader keeps the snapshot, schema included, that its read began with.
A reader inside one REPEATABLE READ transaction across the switch is not covered: Postgres
resolves names outside its snapshot, so it could read generation N+1 as of an older snapshot.

New generations are loaded with their keys only and indexed once, before the switch.

``verify(projections, name)`` builds a scratch generation the same way, brings it to the live view's
position under the same lock, compares the two row by row, and drops it.

Rebuilds and verifies of one projection exclude each other through a leader lock; what a crashed
one leaves behind (tables, the registry's building columns) is cleared by the next. Until then
``projection_statuses`` reports it as an "abandoned rebuild" (or verify): a build is registered
but nobody holds its lock, which dies with the process that held it, SIGKILL included.
"""

from __future__ import annotations

import gc
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Table, inspect, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from projections.collector import collector_paused
from projections.registry import Projections, Runner
from projections.runner import (
    RUNNING,
    STALLED,
    BatchFailed,
    Decoded,
    EventFailed,
    ProjectionRunner,
    ProjectionStatus,
    RebuildableProjection,
    apply_decoded,
    decode_all,
    locked_row,
    projection_generations,
    projection_positions,
    skipped_positions,
)

BUILD_BATCH = 10_000
SWITCH_TIMEOUT_SECONDS = 30.0
SAMPLES_PER_TABLE = 5
_GENERATION = re.compile(r"^(?P<base>.+)__g\d+$")
_LOCK_NOT_AVAILABLE = "55P03"
ABANDONED = "abandoned "

# (position reached, position to reach): called as a build advances, last just before it ends.
ProgressCallback = Callable[[int, int], None]


class UnknownProjection(LookupError):
    pass


class ProjectionBusy(RuntimeError):
    pass


class RebuildFailed(RuntimeError):
    pass


# -- which projections there are -------------------------------------------------------------------


def runner_for(projections: Projections, name: str) -> Runner:
    runners = projections.runners
    if name not in runners:
        known = ", ".join(sorted(runners))
        raise UnknownProjection(f"unknown projection {name!r} (known: {known})")
    return runners[name]


def sql_runner_for(projections: Projections, name: str) -> ProjectionRunner:
    """The SQL projection ``name``: the only kind this module rebuilds (the knowledge views
    rebuild themselves, projections/knowledge.py)."""
    runner = runner_for(projections, name)
    if not isinstance(runner, ProjectionRunner):
        raise UnknownProjection(f"{name} is not a SQL projection")
    return runner


def projection_statuses(projections: Projections) -> list[ProjectionStatus]:
    """Each projection's status, with a build nobody is running any more called abandoned."""
    return [
        build_status(projections, runner)
        if isinstance(runner, ProjectionRunner)
        else runner.status()
        for runner in projections.runners.values()
    ]


def build_status(projections: Projections, runner: ProjectionRunner) -> ProjectionStatus:
    status = runner.status()
    if status.building is None or _build_running(projections, runner):
        return status
    purpose = status.building_purpose or "build"
    return replace(status, building_purpose=f"{ABANDONED}{purpose}")


def _build_running(projections: Projections, runner: ProjectionRunner) -> bool:
    """Whether a rebuild or verify holds the build lock right now (a probe: taken, let go)."""
    lock = projections.leader_lock(_build_lock_name(runner))
    if not lock.try_acquire():
        return True
    lock.release()
    return False


def _build_lock_name(runner: ProjectionRunner) -> str:
    return f"projection-build.{runner.name}"


# -- rebuild ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildResult:
    name: str
    generation: int
    position: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def rebuild(
    projections: Projections,
    name: str,
    progress: ProgressCallback | None = None,
    batch_size: int = BUILD_BATCH,
) -> RebuildResult:
    """Build the next generation of ``name`` from the log, switch to it, drop the old one."""
    runner = sql_runner_for(projections, name)
    started = time.perf_counter()
    with _exclusive(projections, runner) as live_generation:
        build = _Build(runner, live_generation + 1, "rebuild", batch_size)
        try:
            build.create()
            build.run(progress, target=runner.reader.head)
            build.index()
            position = _switch(runner, build, live_generation, progress)
        finally:
            build.drop()
        _drop_tables(runner.engine, [_retired(t.name, live_generation) for t in build.live_tables])
    return RebuildResult(
        name, build.generation, position, build.events, time.perf_counter() - started
    )


def _switch(
    runner: ProjectionRunner, build: _Build, live_generation: int, progress: ProgressCallback | None
) -> int:
    deadline = time.monotonic() + SWITCH_TIMEOUT_SECONDS
    while True:
        start = build.position
        try:
            with runner.engine.begin() as conn:
                return _switch_in(conn, runner, build, live_generation, deadline)
        except (EventFailed, BatchFailed):
            # The tail failed under the lock: find the culprit outside it, batch by batch.
            build.position = start
            build.run(progress, target=lambda: runner.position)
        except BaseException:
            build.position = start
            raise


def _switch_in(
    conn: Connection,
    runner: ProjectionRunner,
    build: _Build,
    live_generation: int,
    deadline: float,
) -> int:
    live = locked_row(conn, runner.name)
    build.apply_tail(conn, live.position)
    _take_tables(conn, build.live_tables, deadline, runner.name)
    for live_table, new_table in zip(build.live_tables, build.projection.tables, strict=True):
        _rename(conn, live_table.name, _retired(live_table.name, live_generation))
        _rename(conn, new_table.name, live_table.name)
    conn.execute(
        update(projection_generations)
        .where(projection_generations.c.name == runner.name)
        .values(generation=build.generation, updated_at=_now())
    )
    position: int = max(live.position, build.position)
    conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == runner.name)
        .values(**_switched(live, position, runner.projection.version))
    )
    return position


def _switched(live: Row[Any], position: int, version: int) -> dict[str, Any]:
    """The position row after a switch: a stall the new generation got past is over."""
    values: dict[str, Any] = {"position": position, "version": version, "updated_at": _now()}
    stalled_at = live.error_position if live.state == STALLED else None
    if stalled_at is not None and position >= stalled_at:
        values.update(state=RUNNING, error=None, error_position=None)
    return values


def _take_tables(conn: Connection, tables: Sequence[Table], deadline: float, name: str) -> None:
    """ACCESS EXCLUSIVE on every live table, all at once or none (Postgres).

    NOWAIT inside a savepoint: the switch never waits while holding some of the tables, so it
    cannot deadlock with a reader holding one and waiting for another; it tries again until the
    readers of the moment are done. On SQLite the write lock the switch already holds suffices.
    """
    if conn.dialect.name != "postgresql":
        return
    quote = conn.dialect.identifier_preparer.quote
    statement = f"LOCK TABLE {', '.join(quote(t.name) for t in tables)} IN ACCESS EXCLUSIVE MODE"
    delay = 0.001
    while True:
        savepoint = conn.begin_nested()
        try:
            conn.exec_driver_sql(f"{statement} NOWAIT")
        except OperationalError as error:
            savepoint.rollback()
            if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            if time.monotonic() > deadline:
                raise RebuildFailed(
                    f"{name}: readers kept the live tables busy for {SWITCH_TIMEOUT_SECONDS:g}s;"
                    " nothing was switched, try again"
                ) from error
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)
            continue
        savepoint.commit()
        return


def _rename(conn: Connection, old: str, new: str) -> None:
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"ALTER TABLE {quote(old)} RENAME TO {quote(new)}")


def _retired(live_name: str, generation: int) -> str:
    return f"{live_name}{_suffix(generation)}"


def _suffix(generation: int) -> str:
    return f"__g{generation}"


# -- building a generation -------------------------------------------------------------------------


class _Build:
    """One generation of a projection's tables, filled from the log beside the live ones."""

    def __init__(
        self, runner: ProjectionRunner, generation: int, purpose: str, batch_size: int
    ) -> None:
        live = runner.projection
        if not isinstance(live, RebuildableProjection):
            raise UnknownProjection(f"projection {runner.name} cannot be rebuilt")
        self.runner = runner
        self.engine = runner.engine
        self.reader = runner.reader
        self.generation = generation
        self.purpose = purpose
        self.batch_size = batch_size
        self.live_tables = live.tables
        self.projection = live.at_generation(_suffix(generation))
        self.position = 0
        self.events = 0
        with self.engine.connect() as conn:
            row = conn.execute(
                select(projection_positions.c.skipped).where(
                    projection_positions.c.name == runner.name
                )
            ).one()
        # An operator's skip stands: the new generation steps over the same events.
        self.skipped = frozenset(skipped_positions(row.skipped))

    def create(self) -> None:
        """Tables with their keys only: loading first and indexing once after is cheaper."""
        with self.engine.begin() as conn:
            for table in self.projection.tables:
                conn.execute(CreateTable(table))
        now = _now()
        self._registry(
            building=self.generation,
            purpose=self.purpose,
            building_position=0,
            building_started_at=now,
            updated_at=now,
        )

    def index(self) -> None:
        with self.engine.begin() as conn:
            for table in self.projection.tables:
                for index in table.indexes:
                    index.create(conn)

    def drop(self) -> None:
        """Drop this generation's tables if they still exist under its names."""
        _drop_tables(self.engine, [t.name for t in self.projection.tables])
        self._registry(
            building=None,
            purpose=None,
            building_position=None,
            building_started_at=None,
            updated_at=_now(),
        )

    def run(self, progress: ProgressCallback | None, target: Callable[[], int]) -> None:
        """Commit batches until the log has nothing more up to ``target()``."""
        with collector_paused():
            while True:
                goal = target()
                if progress:
                    progress(self.position, max(goal, self.position))
                if self.position >= goal:
                    return
                applied = self._step(goal)
                gc.collect(1)  # the batch is gone by now, so this is quick
                if applied < self.batch_size:  # the head, or the goal, is reached
                    if progress:
                        progress(self.position, max(goal, self.position))
                    return

    def _step(self, upto: int) -> int:
        batch = self._read(upto)
        if batch:
            self._commit(batch)
        return len(batch)

    def _read(self, upto: int) -> list[Decoded]:
        # Bounded here, not in SQL: with both bounds Postgres may sort the range instead of
        # walking the index, which made reads two to three times slower.
        page = self.reader.read_after(self.position, self.batch_size)
        return [d for d in decode_all(self.reader, page) if d.position <= upto]

    def apply_tail(self, conn: Connection, upto: int) -> None:
        """Inside the caller's transaction: apply what lies between this build and ``upto``."""
        while self.position < upto:
            batch = self._read(upto)
            if not batch:
                return
            apply_decoded(self.projection, conn, self._todo(batch))
            self._advance(batch)

    def _commit(self, batch: Sequence[Decoded]) -> None:
        todo = self._todo(batch)
        try:
            with self.engine.begin() as conn:
                self._record(conn, batch[-1].position)
                apply_decoded(self.projection, conn, todo)
        except BatchFailed:
            self._one_by_one(todo)
        except EventFailed as failed:
            raise self._failed(failed) from failed
        self._advance(batch)

    def _one_by_one(self, todo: Sequence[Decoded]) -> None:
        """A batch failed to write: apply its events singly to name the one at fault."""
        for decoded in todo:
            try:
                with self.engine.begin() as conn:
                    self._record(conn, decoded.position)
                    apply_decoded(self.projection, conn, [decoded])
            except EventFailed as failed:
                raise self._failed(failed) from failed

    def _failed(self, failed: EventFailed) -> RebuildFailed:
        return RebuildFailed(
            f"{self.runner.name}: the event at position {failed.position} cannot be projected"
            f" ({failed.describe()}); the live view is unchanged"
        )

    def _todo(self, batch: Sequence[Decoded]) -> list[Decoded]:
        return [d for d in batch if d.position not in self.skipped]

    def _advance(self, batch: Sequence[Decoded]) -> None:
        self.position = batch[-1].position
        self.events += len(batch)

    def _record(self, conn: Connection, position: int) -> None:
        # First in the transaction: on SQLite it takes the write lock before anything is read.
        conn.execute(
            update(projection_generations)
            .where(projection_generations.c.name == self.runner.name)
            .values(building_position=position, updated_at=_now())
        )

    def _registry(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_generations)
                .where(projection_generations.c.name == self.runner.name)
                .values(**values)
            )


@contextmanager
def _exclusive(projections: Projections, runner: ProjectionRunner) -> Iterator[int]:
    """One rebuild or verify per projection at a time; yields the live generation."""
    lock = projections.leader_lock(_build_lock_name(runner))
    if not lock.try_acquire():
        raise ProjectionBusy(f"a rebuild or verify of {runner.name} is already running")
    try:
        _drop_leftovers(runner)
        with runner.engine.connect() as conn:
            live_generation: int = conn.execute(
                select(projection_generations.c.generation).where(
                    projection_generations.c.name == runner.name
                )
            ).scalar_one()
        yield live_generation
    finally:
        lock.release()


def _drop_leftovers(runner: ProjectionRunner) -> None:
    """Tables of generations that are not live, left by a crash (the live ones carry no suffix)."""
    projection = runner.projection
    assert isinstance(projection, RebuildableProjection)
    bases = {t.name for t in projection.tables}
    with runner.engine.connect() as conn:
        names = inspect(conn).get_table_names()
    leftovers = []
    for name in names:
        match = _GENERATION.match(name)
        if match and match["base"] in bases:
            leftovers.append(name)
    _drop_tables(runner.engine, leftovers)


def _drop_tables(engine: Engine, names: Sequence[str]) -> None:
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")


# -- verify ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableDiff:
    table: str
    live_rows: int
    rebuilt_rows: int
    missing: int
    extra: int
    changed: int
    samples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self) -> str:
        parts = [
            f"{count} {kind}"
            for kind, count in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("changed", self.changed),
            )
            if count
        ]
        return f"{self.table}: {', '.join(parts) or 'same'}"


@dataclass(frozen=True)
class VerifyReport:
    """``missing``: rows a fresh build has and the live view lacks; ``extra``: the reverse."""

    name: str
    position: int
    tables: tuple[TableDiff, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def differences(self) -> list[TableDiff]:
        return [t for t in self.tables if not t.ok]

    def summary(self) -> str:
        if self.ok:
            return f"{self.name} matches a fresh build at position {self.position}"
        parts = "; ".join(t.summary() for t in self.differences())
        return f"{self.name} differs from a fresh build at position {self.position}: {parts}"


def verify(
    projections: Projections,
    name: str,
    progress: ProgressCallback | None = None,
    batch_size: int = BUILD_BATCH,
) -> VerifyReport:
    """Build ``name`` afresh into a scratch generation and compare it with the live view.

    The comparison runs under the live projection's position lock, so the live runner pauses
    while the tables are read; the scratch generation is dropped whatever happens.
    """
    runner = sql_runner_for(projections, name)
    with _exclusive(projections, runner) as live_generation:
        build = _Build(runner, live_generation + 1, "verify", batch_size)
        try:
            build.create()
            build.run(progress, target=lambda: runner.position)
            return _compare_at_live_position(runner, build, progress)
        finally:
            build.drop()


def _compare_at_live_position(
    runner: ProjectionRunner, build: _Build, progress: ProgressCallback | None
) -> VerifyReport:
    while True:
        start = build.position
        try:
            with runner.engine.begin() as conn:
                live = locked_row(conn, runner.name)
                build.apply_tail(conn, live.position)
                diffs = tuple(
                    compare_tables(conn, mine, theirs)
                    for mine, theirs in zip(build.live_tables, build.projection.tables, strict=True)
                )
                return VerifyReport(runner.name, live.position, diffs)
        except (EventFailed, BatchFailed):
            build.position = start
            build.run(progress, target=lambda: runner.position)


def compare_tables(
    conn: Connection, live: Table, rebuilt: Table, samples: int = SAMPLES_PER_TABLE
) -> TableDiff:
    """Merge both tables in key order, streaming, and count the rows that differ."""
    columns = [c.name for c in rebuilt.columns]
    key = _key_name(rebuilt)
    counts = {"live": 0, "rebuilt": 0, "missing": 0, "extra": 0, "changed": 0}
    notes: list[str] = []

    def note(kind: str, text: str) -> None:
        counts[kind] += 1
        if len(notes) < samples:
            notes.append(text)

    mine = _ordered_rows(conn, live, key, columns)
    theirs = _ordered_rows(conn, rebuilt, key, columns)
    left, right = next(mine, None), next(theirs, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[key] < right[key]):
            assert left is not None
            note("extra", f"extra row {left[key]}")
            counts["live"] += 1
            left = next(mine, None)
        elif left is None or right[key] < left[key]:
            note("missing", f"missing row {right[key]}")
            counts["rebuilt"] += 1
            right = next(theirs, None)
        else:
            changed = [c for c in columns if left[c] != right[c]]
            if changed:
                c = changed[0]
                note("changed", f"row {left[key]}: {c} is {left[c]!r}, rebuilt {right[c]!r}")
            counts["live"] += 1
            counts["rebuilt"] += 1
            left, right = next(mine, None), next(theirs, None)
    return TableDiff(
        table=live.name,
        live_rows=counts["live"],
        rebuilt_rows=counts["rebuilt"],
        missing=counts["missing"],
        extra=counts["extra"],
        changed=counts["changed"],
        samples=tuple(notes),
    )


def _key_name(table: Table) -> str:
    return next(iter(table.primary_key.columns)).name


def _ordered_rows(
    conn: Connection, table: Table, key: str, columns: list[str]
) -> Iterator[dict[str, Any]]:
    column = table.c[key]
    # Python compares strings by code point; so must the database, whatever its locale.
    by_code_point = conn.dialect.name == "postgresql" and _is_text(column)
    order = column.collate("C") if by_code_point else column
    query = select(*(table.c[c] for c in columns)).order_by(order).execution_options(yield_per=1000)
    for row in conn.execute(query).mappings():
        yield dict(row)


def _is_text(column: Any) -> bool:
    return column.type.python_type is str


# -- progress --------------------------------------------------------------------------------------


@contextmanager
def rich_progress(console: Console, description: str) -> Iterator[ProgressCallback]:
    """A progress bar over log positions, for the CLI and the bench."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=None)

        def update_bar(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(done, total))

        yield update_bar


def _now() -> datetime:
    return datetime.now(UTC)
