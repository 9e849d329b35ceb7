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
position under the same lock, compares the two row by row, and drops it (projections/verify.py).

Rebuilds and verifies of one projection exclude each other through a leader lock; what a crashed
one leaves behind (tables, the registry's building columns) is cleared by the next. Until then
``projection_statuses`` reports it as an "abandoned rebuild" (or verify): a build is registered
but nobody holds its lock, which dies with the process that held it, SIGKILL included.

Building a generation lives in projections/generation_build.py, the build's status in
projections/build_status.py; the names callers use are importable from here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
from sqlalchemy import Table, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import OperationalError

from projections.build_status import (
    ABANDONED,
    UnknownProjection,
    build_status,
    projection_statuses,
    runner_for,
    sql_runner_for,
)
from projections.generation_build import (
    BUILD_BATCH,
    GenerationBuild,
    ProgressCallback,
    ProjectionBusy,
    RebuildFailed,
    drop_tables,
    exclusive,
    retired,
)
from projections.positions import (
    RUNNING,
    STALLED,
    locked_row,
    projection_generations,
    projection_positions,
    utc_now,
)
from projections.registry import Projections
from projections.runner import ProjectionRunner
from projections.sql_apply import BatchFailed, EventFailed
from projections.verify import TableDiff, VerifyReport, compare_tables, verify

# Callers import these from here; their homes are named in the docstring.
__all__ = [
    "ABANDONED",
    "BUILD_BATCH",
    "ProgressCallback",
    "ProjectionBusy",
    "RebuildFailed",
    "RebuildResult",
    "TableDiff",
    "UnknownProjection",
    "VerifyReport",
    "build_status",
    "compare_tables",
    "projection_statuses",
    "rebuild",
    "rich_progress",
    "runner_for",
    "sql_runner_for",
    "verify",
]

SWITCH_TIMEOUT_SECONDS = 30.0
_LOCK_NOT_AVAILABLE = "55P03"


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
    with exclusive(projections, runner) as live_generation:
        build = GenerationBuild(runner, live_generation + 1, "rebuild", batch_size)
        try:
            build.create()
            build.run(progress, target=runner.reader.head)
            build.index()
            position = _switch(runner, build, live_generation, progress)
        finally:
            build.drop()
        drop_tables(runner.engine, [retired(t.name, live_generation) for t in build.live_tables])
    return RebuildResult(
        name, build.generation, position, build.events, time.perf_counter() - started
    )


def _switch(
    runner: ProjectionRunner,
    build: GenerationBuild,
    live_generation: int,
    progress: ProgressCallback | None,
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
    build: GenerationBuild,
    live_generation: int,
    deadline: float,
) -> int:
    live = locked_row(conn, runner.name)
    build.apply_tail(conn, live.position)
    _take_tables(conn, build.live_tables, deadline, runner.name)
    for live_table, new_table in zip(build.live_tables, build.projection.tables, strict=True):
        _rename(conn, live_table.name, retired(live_table.name, live_generation))
        _rename(conn, new_table.name, live_table.name)
    conn.execute(
        update(projection_generations)
        .where(projection_generations.c.name == runner.name)
        .values(generation=build.generation, updated_at=utc_now())
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
    values: dict[str, Any] = {"position": position, "version": version, "updated_at": utc_now()}
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
