"""Runs the object, vector and graph views like the relational one: from the log or a feed,
resumable, blue/green rebuildable, verifiable, with status.

Their targets are not transactional with the log, so a batch is written idempotently first
(deterministic keys and ids) and the target's own position after it (each projection does that);
a crash in between replays the batch onto the same objects, points and nodes. The runner adds:

- generations: each view lives in one generation of its target (a collection, an object prefix,
  a graph namespace), and readers go through the live pointer (an alias, a pointer object). The
  runner looks the live one up before every batch, so a rebuild switched by another process is
  followed at the next batch, from the new generation's own position;
- state for any process to read (the position mirrored, stalled or running, failed documents) in
  the views database, so ``janus projections status`` never opens a target: an embedded Qdrant
  folder admits one process, and that is the one running the vector view;
- a poison event (say, a document whose blob is missing) stalls the view at its position, as a
  SQL view does; an unreachable or locked target raises TargetUnavailable and is retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from eventsourcing.persistence import Notification
from qdrant_client.http.exceptions import ResponseHandlingException
from sqlalchemy import Column, MetaData, String, Table, Text, delete, inspect, select, update
from sqlalchemy.engine import Connection, Engine

from adapters.blobs import BlobNotFound, BlobStoreError
from adapters.graph import GraphStoreError
from adapters.vectors import VectorIndexError
from event_store.reader import LoggedEvent, NotificationReader
from projections.feed_loop import Applied, FeedLoop, Progress, strictly_rising
from projections.generations import Checked, Generations, KnowledgeProjection
from projections.positions import (
    POSITION,
    RUNNING,
    STALLED,
    projection_positions,
    register_position,
    set_state,
    utc_now,
)
from projections.registry import TargetUnavailable
from projections.status import ProjectionStatus, lag_seconds

__all__ = ["KnowledgeProjection", "KnowledgeRunner", "KnowledgeStatus", "RebuildResult"]

log = logging.getLogger(__name__)

VERSION = 1
BUILD_BATCH = 500
NOT_STARTED = "not started"
# A target that cannot be reached or is held by another process: retried, never a poison event.
TARGET_ERRORS: tuple[type[BaseException], ...] = (
    VectorIndexError,
    GraphStoreError,
    BlobStoreError,
    OSError,
    ResponseHandlingException,
)

failures_metadata = MetaData()
knowledge_failures = Table(
    "knowledge_failures",
    failures_metadata,
    Column("projection", String(100), primary_key=True),
    Column("document_id", String(36), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("position", POSITION, nullable=False),
)


@dataclass(frozen=True)
class KnowledgeStatus(ProjectionStatus):
    target: str | None = None


@dataclass(frozen=True)
class RebuildResult:
    name: str
    generation: int
    target: str
    position: int
    replaced: str | None


class _Identity(NamedTuple):
    name: str
    version: int


class KnowledgeRunner(FeedLoop):
    """Feeds one knowledge view; satisfies projections.registry.Runner.

    ``open_generations`` builds the target lazily: nothing is opened until the view is run,
    rebuilt or verified, so a process that only reads status never takes an embedded lock.
    """

    def __init__(
        self,
        name: str,
        open_generations: Callable[[], Generations],
        reader: NotificationReader,
        engine: Engine,
        batch_size: int = 200,
    ) -> None:
        self.name = name
        self.reader = reader
        self.engine = engine
        self.batch_size = batch_size
        self._open_generations = open_generations
        self._generations: Generations | None = None
        self._target: str | None = None
        self._view: KnowledgeProjection | None = None
        self._applying = threading.RLock()
        self._set_up = False

    @property
    def projection(self) -> _Identity:
        return _Identity(self.name, VERSION)

    # -- state in the views database -----------------------------------------------------------

    def setup(self) -> None:
        failures_metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            register_position(conn, self.name, VERSION)
        self._set_up = True

    def _row(self) -> Any:
        with self.engine.connect() as conn:
            query = select(projection_positions).where(projection_positions.c.name == self.name)
            return conn.execute(query).first()

    def _progress(self) -> Progress | None:
        row = self._row()
        if row is None:
            return None
        return Progress(int(row.position), row.state, row.error, row.error_position)

    @property
    def position(self) -> int:
        """The position last stored by whoever runs the view (mirrored after its target's)."""
        row = self._row()
        return 0 if row is None else int(row.position)

    def status(self) -> KnowledgeStatus:
        row = self._row()
        head = self.reader.head()
        failed: tuple[tuple[str, str], ...] = ()
        if inspect(self.engine).has_table(knowledge_failures.name):
            with self.engine.connect() as conn:
                query = (
                    select(knowledge_failures.c.document_id, knowledge_failures.c.reason)
                    .where(knowledge_failures.c.projection == self.name)
                    .order_by(knowledge_failures.c.position)
                )
                failed = tuple((r.document_id, r.reason) for r in conn.execute(query))
        position = 0 if row is None else int(row.position)
        lag = lag_seconds(self.reader, position, head)
        return KnowledgeStatus(
            name=self.name,
            version=VERSION,
            position=position,
            head=head,
            state=NOT_STARTED if row is None else row.state,
            error=None if row is None else row.error,
            error_position=None if row is None else row.error_position,
            lag_seconds=lag,
            code_version=VERSION,
            target=self._target,
            failed_documents=failed,
        )

    def retry(self) -> None:
        self._set_state(RUNNING, None, None)

    def skip(self, position: int) -> None:
        raise ValueError(
            f"{self.name} cannot skip an event: its position lives in its target; fix the cause "
            "(say, put the missing blob back) and retry, or retract the document and rebuild"
        )

    def _set_state(self, state: str, error: str | None, at: int | None) -> None:
        with self.engine.begin() as conn:
            set_state(conn, self.name, state, error, at)

    def _record(self, view: KnowledgeProjection, conn: Connection) -> None:
        """Mirror the view's position and its failed documents (both after the target's write)."""
        conn.execute(
            update(projection_positions)
            .where(projection_positions.c.name == self.name)
            .values(position=view.position, updated_at=utc_now())
        )
        for document_id, reason in view.failed.items():
            key = (knowledge_failures.c.projection == self.name) & (
                knowledge_failures.c.document_id == str(document_id)
            )
            conn.execute(delete(knowledge_failures).where(key))
            if reason is not None:
                conn.execute(
                    knowledge_failures.insert().values(
                        projection=self.name,
                        document_id=str(document_id),
                        reason=reason,
                        position=view.position,
                    )
                )
        view.failed.clear()

    # -- the target ------------------------------------------------------------------------------

    @property
    def generations(self) -> Generations:
        if self._generations is None:
            self._generations = _target_call(self._open_generations)
        return self._generations

    def view(self) -> KnowledgeProjection:
        """The live generation's projection, started (its position read from the target).

        Looked up before every batch: a rebuild in another process switches the live
        generation, and this runner follows at its next batch.
        """
        if not self._set_up:  # whoever runs the view first registers it (idempotent)
            self.setup()
        generations = self.generations
        live = _target_call(generations.live)
        if live is None:
            # The first start: an empty first generation goes live at once and fills batch by
            # batch, each one resumable, like any later start.
            live = generations.target(1)
            _target_call(generations.open(live).start)
            _target_call(lambda: generations.switch(live))
        elif generations.generation_of(live) is None:
            # The live generation is another model's: build ours beside it, then switch.
            self.rebuild()
            live = _target_call(generations.live)
        assert live is not None
        if live != self._target or self._view is None:
            self._view, self._target = generations.open(live), live
        _target_call(self._view.start)
        return self._view

    def close(self) -> None:
        """Forget the opened target (its stores are closed by whoever built them)."""
        self._generations = None
        self._view = self._target = None

    # -- feeding ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        with self._applying:
            row = self._row()
            if row is not None and row.state == STALLED:
                return 0
            view = self.view()
            return self._apply(view, self.reader.read_after(view.position, self.batch_size))

    def apply(self, batch: Sequence[Notification]) -> Applied:
        """Apply notifications past the view's position (any feed may deliver twice)."""
        with self._applying:
            row = self._row()
            view = self.view()
            if row is not None and row.state == STALLED:
                return Applied(0, view.position)
            applied = self._apply(view, batch)
            return Applied(applied, view.position)

    def _apply(self, view: KnowledgeProjection, batch: Sequence[Notification]) -> int:
        fresh = strictly_rising(batch, view.position)
        if not fresh:
            return 0
        try:
            events = [self.reader.decode(n) for n in fresh]
            applied = _target_call(lambda: view.apply(events))
        except TargetUnavailable:
            raise
        except Exception:  # noqa: BLE001 - find the event to blame, one by one
            return self._one_by_one(view, fresh)
        with self.engine.begin() as conn:
            self._record(view, conn)
        return int(applied)

    def _one_by_one(self, view: KnowledgeProjection, batch: Sequence[Notification]) -> int:
        applied = 0
        for notification in batch:
            try:
                event = self.reader.decode(notification)
                applied += _target_call(lambda event=event: view.apply([event]))  # type: ignore[misc]
            except TargetUnavailable:
                raise
            except Exception as error:  # noqa: BLE001 - a poison event: stall here, visibly
                description = f"{type(error).__name__}: {error}"
                log.error("%s stalled at %s: %s", self.name, notification.id, description)
                with self.engine.begin() as conn:
                    self._record(view, conn)
                self._set_state(STALLED, description, notification.id)
                return applied
        with self.engine.begin() as conn:
            self._record(view, conn)
        return applied

    # -- rebuild and verify ----------------------------------------------------------------------

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> RebuildResult:
        """Build the next generation from the log beside the live one, switch, drop the old.

        The bulk is built without holding up the live view; the tail and the switch happen
        under this runner's apply lock, so no batch of this process lands in between (another
        process's runner follows the switch at its next batch).
        """
        generations = self.generations
        live = _target_call(generations.live)
        number = (generations.generation_of(live) or 0) + 1
        target = generations.target(number)
        _target_call(lambda: generations.drop(target))  # what a crashed build left
        fresh = generations.open(target)
        _target_call(fresh.start)
        self._build(fresh, progress)
        with self._applying:
            self._build(fresh, progress)
            _target_call(lambda: generations.switch(target))
            self._view, self._target = fresh, target
            self.setup()
            with self.engine.begin() as conn:
                conn.execute(
                    delete(knowledge_failures).where(knowledge_failures.c.projection == self.name)
                )
                self._record(fresh, conn)
            self._set_state(RUNNING, None, None)
        if live is not None and live != target:
            _target_call(lambda: generations.drop(live))
        log.info("%s rebuilt into %s at position %s", self.name, target, fresh.position)
        return RebuildResult(self.name, number, target, fresh.position, live)

    def _build(
        self, view: KnowledgeProjection, progress: Callable[[int, int], None] | None
    ) -> None:
        head = self.reader.head()
        while view.position < head:
            batch = self.reader.read_after(view.position, BUILD_BATCH, stop=head)
            if not batch:
                break
            events = [self.reader.decode(n) for n in batch]
            _target_call(lambda events=events: view.apply(events))  # type: ignore[misc]
            if progress is not None:
                progress(view.position, head)

    def verify(self) -> tuple[int, Checked]:
        """Compare the live generation with what the log implies up to its position."""
        with self._applying:
            view = self.view()
            position = view.position
            return position, _target_call(lambda: view.verify(self._events(position)))

    def _events(self, stop: int) -> Iterator[LoggedEvent]:
        position = 0
        while position < stop:
            batch = self.reader.read_after(position, BUILD_BATCH, stop=stop)
            if not batch:
                return
            for notification in batch:
                yield self.reader.decode(notification)
            position = batch[-1].id


def _target_call(call: Callable[[], Any]) -> Any:
    """Run a call on the target, turning its outages into TargetUnavailable (retried)."""
    try:
        return call()
    except BlobNotFound:
        raise  # the log names a blob that is not there: a poison event, not an outage
    except TARGET_ERRORS as error:
        raise TargetUnavailable(f"{type(error).__name__}: {error}") from error
