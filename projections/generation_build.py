"""One generation of a SQL projection's tables (``goals__g4``, ...), filled from the log beside
the live ones, for a rebuild (projections/rebuild.py) or a verify (projections/verify.py).

A build reads the notification log (never JetStream) in large batches, loads its tables with
their keys only and indexes them once at the end; it records how far it got in the projection's
generations row, where the status commands show it. Builds of one projection exclude each other
through a leader lock (``exclusive``), and each one first clears what a crashed one left.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import inspect, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateTable

from projections.build_status import UnknownProjection, build_lock_name
from projections.collector import collector_paused
from projections.positions import projection_generations, projection_positions, utc_now
from projections.registry import Projections
from projections.runner import ProjectionRunner
from projections.sql_apply import (
    BatchFailed,
    Decoded,
    EventFailed,
    RebuildableProjection,
    apply_decoded,
    decode_all,
)
from projections.status import skipped_positions

BUILD_BATCH = 10_000
_GENERATION = re.compile(r"^(?P<base>.+)__g\d+$")

# (position reached, position to reach): called as a build advances, last just before it ends.
ProgressCallback = Callable[[int, int], None]


class ProjectionBusy(RuntimeError):
    pass


class RebuildFailed(RuntimeError):
    pass


class GenerationBuild:
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
        self.projection = live.at_generation(suffix(generation))
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
        now = utc_now()
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
        drop_tables(self.engine, [t.name for t in self.projection.tables])
        self._registry(
            building=None,
            purpose=None,
            building_position=None,
            building_started_at=None,
            updated_at=utc_now(),
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
            .values(building_position=position, updated_at=utc_now())
        )

    def _registry(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_generations)
                .where(projection_generations.c.name == self.runner.name)
                .values(**values)
            )


@contextmanager
def exclusive(projections: Projections, runner: ProjectionRunner) -> Iterator[int]:
    """One rebuild or verify per projection at a time; yields the live generation."""
    lock = projections.leader_lock(build_lock_name(runner))
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
    drop_tables(runner.engine, leftovers)


def drop_tables(engine: Engine, names: Sequence[str]) -> None:
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")


def retired(live_name: str, generation: int) -> str:
    """The name a live table takes when ``generation`` stops being live."""
    return f"{live_name}{suffix(generation)}"


def suffix(generation: int) -> str:
    return f"__g{generation}"
