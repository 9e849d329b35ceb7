"""Group commit: several commands' events share one transaction, a conflict fails only its own.

The Postgres recorder takes an exclusive table lock per insert so positions become visible in
commit order; throughput therefore comes from fewer, larger transactions rather than more threads.
The first caller to arrive becomes the leader and writes everything queued behind it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Recording

from event_store.application import JanusApplication
from event_store.faults import StoreFault


@dataclass
class _Pending:
    events: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    recordings: list[Recording[UUID]] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitter:
    def __init__(self, app: JanusApplication, max_batch: int = 128) -> None:
        self._app = app
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._leading = False

    def save(self, *aggregates: Any) -> list[Recording[UUID]]:
        events = [e for agg in aggregates if agg is not None for e in agg.collect_events()]
        if not events:
            return []
        pending = _Pending(events)
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = self._leading or lead
        if lead:
            self._lead()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.recordings

    def _lead(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._leading = False
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))
                ]
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                self._write_one(batch[0])
                return
            try:
                recordings = self._app.events.put([e for p in batch for e in p.events])
            except IntegrityError:
                # Someone in the batch lost a race: write each alone so only it fails.
                for pending in batch:
                    self._write_one(pending)
                return
            offset = 0
            for pending in batch:
                pending.recordings = list(recordings[offset : offset + len(pending.events)])
                offset += len(pending.events)
        except BaseException as error:  # noqa: BLE001 - every waiting caller must see the failure
            if isinstance(error, StoreFault) and not error.retryable:
                # A lock timeout or an outage just cost this batch the whole bound; the callers
                # queued behind it would each wait as long again: they fail with it now.
                batch = batch + self._drain()
            for pending in batch:
                if not pending.recordings and pending.error is None:
                    pending.error = error
        finally:
            for pending in batch:
                pending.done.set()

    def _drain(self) -> list[_Pending]:
        with self._lock:
            drained = list(self._queue)
            self._queue.clear()
        return drained

    def _write_one(self, pending: _Pending) -> None:
        try:
            pending.recordings = list(self._app.events.put(pending.events))
        except IntegrityError as error:
            pending.error = error
