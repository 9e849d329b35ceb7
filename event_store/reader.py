"""Reading the notification log: ordered by position, with possible gaps, decoded on demand."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from event_store.application import JanusApplication


@dataclass(frozen=True)
class LoggedEvent:
    position: int
    topic: str
    originator_id: UUID
    originator_version: int
    event: Any

    @property
    def type_name(self) -> str:
        return type(self.event).__qualname__


class NotificationReader:
    def __init__(self, app: JanusApplication) -> None:
        self._app = app

    def head(self) -> int:
        return self._app.head()

    def read_after(
        self, position: int, limit: int, topics: Sequence[str] = (), stop: int | None = None
    ) -> list[Notification]:
        return list(
            self._app.recorder.select_notifications(
                start=position, limit=limit, stop=stop, topics=topics, inclusive_of_start=False
            )
        )

    def decode(self, notification: Notification) -> LoggedEvent:
        return LoggedEvent(
            position=notification.id,
            topic=notification.topic,
            originator_id=UUID(str(notification.originator_id)),
            originator_version=notification.originator_version,
            event=self._app.mapper.to_domain_event(notification),
        )

    def iterate(
        self, after: int = 0, batch: int = 1_000, stop: int | None = None
    ) -> Iterator[LoggedEvent]:
        position = after
        while True:
            page = self.read_after(position, batch, stop=stop)
            if not page:
                return
            for notification in page:
                yield self.decode(notification)
            position = page[-1].id
