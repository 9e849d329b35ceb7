"""Everything a request handler may use, built once per app by ``api.app.create_app``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.metrics import Counter as MetricCounter

from api.auth import KeyVerifier
from api.freshness import ViewWaiter
from api.idempotency import ResponseStore
from api.parts import ApiParts, Runtime
from api.reads import ReadModel
from api.settings import ApiSettings
from api.workers import Workers
from commands.ingest import DocumentIngest
from commands.scheduler import Scheduler
from projections.document_views import ViewStatusReader

T = TypeVar("T")
WORKER_THREADS = 32


@dataclass
class ApiContext:
    parts: ApiParts
    settings: ApiSettings
    auth_required: bool
    verifier: KeyVerifier
    reads: ReadModel
    waiter: ViewWaiter
    responses: ResponseStore
    denials: MetricCounter
    runtime: Runtime | None
    workers: Workers = field(default_factory=lambda: Workers(WORKER_THREADS, "api"))
    open_streams: int = 0
    streams_by_key: Counter[str] = field(default_factory=Counter)
    _standalone_scheduler: Scheduler | None = field(default=None, repr=False)
    _documents: DocumentIngest | None = field(default=None, repr=False)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run blocking work (the store, the views) in a worker thread: one hop per request.

        The handlers need no context variables there (the trace context is taken on the event
        loop).
        """
        return await self.workers.run(work, *args)

    def scheduler(self) -> Scheduler:
        """The running scheduler when this process holds its lock, else one that only fires.

        A standalone scheduler records and runs a manual fire like the real one, but a retry it
        schedules waits for the leading scheduler's next start (which recovers open fires).
        """
        running = self.runtime.scheduler if self.runtime is not None else None
        if running is not None:
            return running
        if self._standalone_scheduler is None:
            self._standalone_scheduler = self.parts.scheduler()
        return self._standalone_scheduler

    def documents(self) -> DocumentIngest:
        """The documents' write path on this node's blob store (built on first use)."""
        if self._documents is None:
            self._documents = self.parts.documents()
        return self._documents

    def document_views(self) -> dict[str, ViewStatusReader]:
        """Each view's status of a document (the hook in ``bootstrap.documents``)."""
        return self.parts.document_views(self.documents().blobs)
