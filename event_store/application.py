"""The Janus event-sourced application: one ordered log for every aggregate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    JSONTranscoder,
    ProcessRecorder,
    Recording,
    Tracking,
)
from eventsourcing.utils import Environment

from domain.base import JanusAggregate
from event_store.transcodings import register_janus_transcodings


class JanusApplication(Application[UUID]):
    """Events are written here and nowhere else.

    The recorder is a process recorder, so process managers (the executor, the scheduler) can
    save their new events together with the log position they have processed, atomically.
    """

    name = "janus"

    def __init__(self, env: Mapping[str, str], name: str = "janus") -> None:
        self._explicit_env = dict(env)
        self.name = name
        super().__init__()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Deliberately ignore os.environ: only the composition root decides where events go.
        return Environment(name, self._explicit_env)

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_janus_transcodings(transcoder)

    def save_tracked(
        self, *aggregates: JanusAggregate | None, tracking: Tracking | None
    ) -> list[Recording[UUID]]:
        """Save new events and, in the same transaction, how far a processor has read the log."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        processing_event.collect_events(*aggregates)
        if not processing_event.events and tracking is not None:
            self.process_recorder.insert_tracking(tracking)
            return []
        return self._record(processing_event)

    def tracked_position(self, processor: str) -> int:
        return self.process_recorder.max_tracking_id(processor) or 0

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0


def last_position(recordings: Sequence[Recording[UUID]]) -> int | None:
    return max((r.notification.id for r in recordings), default=None)
