"""Feeds a SQL projection from the notification log, storing its position with each view change.

Each batch is one transaction: view rows and the new position commit together, so a crash loses
or repeats nothing. A failing event stops the projection at that position with the error recorded
(``stalled``); nothing is skipped unless an operator says so, and that is recorded too.

The pieces around the runner live beside it and are importable from here as before: the position
tables (projections/positions.py), applying a batch (projections/sql_apply.py), status and lag
(projections/status.py) and the loops shared with the knowledge views (projections/feed_loop.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification
from sqlalchemy import Select, select, update
from sqlalchemy.engine import Connection, Engine

from event_store.reader import NotificationReader
from projections.feed_loop import Applied, FeedLoop, Progress, ProjectionStalled, strictly_rising
from projections.migrations import migrate
from projections.positions import (
    POSITION,
    RUNNING,
    STALLED,
    insert_missing,
    locked_row,
    projection_generations,
    projection_positions,
    register_position,
    runtime_metadata,
    set_state,
    utc_now,
)
from projections.sql_apply import (
    BatchFailed,
    Decoded,
    EventFailed,
    RebuildableProjection,
    SqlProjection,
    apply_decoded,
    decode_all,
)
from projections.status import ProjectionStatus, event_time, lag_seconds, skipped_positions

# Callers import these from here; their homes are named in the docstring.
__all__ = [
    "POSITION",
    "RUNNING",
    "STALLED",
    "Applied",
    "BatchFailed",
    "Decoded",
    "EventFailed",
    "ProjectionRunner",
    "ProjectionStalled",
    "ProjectionStatus",
    "RebuildableProjection",
    "SqlProjection",
    "apply_decoded",
    "decode_all",
    "event_time",
    "locked_row",
    "projection_generations",
    "projection_positions",
    "runtime_metadata",
    "skipped_positions",
]

log = logging.getLogger(__name__)


class ProjectionRunner(FeedLoop):
    def __init__(
        self,
        projection: SqlProjection,
        reader: NotificationReader,
        engine: Engine,
        batch_size: int = 500,
    ) -> None:
        self.projection = projection
        self.reader = reader
        self.engine = engine
        self.batch_size = batch_size
        self.name = projection.name
        # The projection buffers a transaction's writes; one transaction at a time per process
        # (other processes are kept apart by the position claim).
        self._applying = threading.Lock()

    def setup(self) -> None:
        """Bring the views schema to the migrations' head and register this projection.

        Safe when several processes start at once: migrations are serialized by the database
        and the registration rows are inserted only if missing.
        """
        migrate(self.engine)
        with self.engine.begin() as conn:
            self.projection.create_schema(conn)
        with self.engine.begin() as conn:
            register_position(conn, self.name, self.projection.version)
            insert_missing(
                conn, projection_generations, name=self.name, generation=1, updated_at=utc_now()
            )

    def _row(self) -> Select[Any]:
        return select(projection_positions).where(projection_positions.c.name == self.name)

    def _progress(self) -> Progress:
        with self.engine.connect() as conn:
            row = conn.execute(self._row()).one()
        return Progress(row.position, row.state, row.error, row.error_position)

    def status(self) -> ProjectionStatus:
        with self.engine.connect() as conn:
            row = conn.execute(self._row()).one()
            generation = conn.execute(
                select(projection_generations).where(projection_generations.c.name == self.name)
            ).first()
        head = self.reader.head()
        return ProjectionStatus(
            name=self.name,
            version=row.version,
            position=row.position,
            head=head,
            state=row.state,
            error=row.error,
            error_position=row.error_position,
            generation=generation.generation if generation else 1,
            lag_seconds=lag_seconds(self.reader, row.position, head),
            building=generation.building if generation else None,
            building_purpose=generation.purpose if generation else None,
            building_position=generation.building_position if generation else None,
            skipped=skipped_positions(row.skipped),
            code_version=self.projection.version,
        )

    @property
    def position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self._row()).one().position)

    def run_once(self) -> int:
        """Apply the next batch from the notification log; returns how many were applied."""
        progress = self._progress()
        if progress.state == STALLED:
            return 0
        return self.apply_batch(self.reader.read_after(progress.position, self.batch_size))

    def apply(self, batch: Sequence[Notification]) -> Applied:
        """``apply_batch``, also saying where the stored position is afterwards (which saves a
        feed reading it back after every batch)."""
        progress = self._progress()
        fresh = strictly_rising(batch, progress.position)
        if progress.state == STALLED or not fresh:
            return Applied(0, progress.position)
        return self._apply_fresh(progress.position, decode_all(self.reader, fresh))

    def _apply_fresh(self, start: int, fresh: Sequence[Decoded]) -> Applied:
        with self._applying:
            try:
                with self.engine.begin() as conn:
                    if not self._claim(conn, start, fresh[-1].position):
                        return Applied(0, None)
                    apply_decoded(self.projection, conn, fresh)
            except (EventFailed, BatchFailed):
                return self._apply_one_by_one(start, fresh)
        return Applied(len(fresh), fresh[-1].position)

    def _claim(self, conn: Connection, expected: int, position: int) -> bool:
        """Move the position first, inside the view transaction.

        The conditional update takes the row (Postgres) or database (SQLite) write lock before any
        view row is touched, so a second runner of the same projection waits, then finds the
        position moved and backs off instead of applying the same events twice. A rebuild's
        switch takes the same lock, so it never interleaves with a batch.
        """
        claimed = conn.execute(
            update(projection_positions)
            .where(projection_positions.c.name == self.name)
            .where(projection_positions.c.position == expected)
            .values(position=position, updated_at=utc_now())
        )
        return claimed.rowcount == 1

    def _apply_one_by_one(self, start: int, batch: Sequence[Decoded]) -> Applied:
        position = start
        for count, decoded in enumerate(batch):
            try:
                with self.engine.begin() as conn:
                    if not self._claim(conn, position, decoded.position):
                        return Applied(count, None)
                    apply_decoded(self.projection, conn, [decoded])
            except EventFailed as failed:
                self._stall(decoded.position, failed.describe())
                return Applied(count, position)
            position = decoded.position
        return Applied(len(batch), position)

    def _stall(self, position: int, error: str) -> None:
        log.error("projection %s stalled at position %s: %s", self.name, position, error)
        with self.engine.begin() as conn:
            set_state(conn, self.name, STALLED, error, position)

    def retry(self) -> None:
        with self.engine.begin() as conn:
            set_state(conn, self.name, RUNNING, None, None)

    def skip(self, position: int) -> None:
        """Operator's decision: step over the stalled event at ``position`` and record that."""
        progress = self._progress()
        if progress.state != STALLED or progress.error_position != position:
            raise ValueError(
                f"{self.name} is not stalled at position {position} "
                f"(state {progress.state}, stalled at {progress.error_position})"
            )
        with self.engine.begin() as conn:
            row = conn.execute(self._row()).one()
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(
                    position=position,
                    state=RUNNING,
                    error=None,
                    error_position=None,
                    skipped=f"{row.skipped}{position},",
                    updated_at=utc_now(),
                )
            )
