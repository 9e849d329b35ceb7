"""What a projection reports about itself: position, lag (in events and seconds), state.

Shared by every runner kind (SQL views, projections/runner.py; knowledge views,
projections/knowledge.py) and by the status commands.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.utils import TopicError

from event_store.reader import NotificationReader
from projections.positions import STALLED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    version: int
    position: int
    head: int
    state: str
    error: str | None
    error_position: int | None
    generation: int = 1
    lag_seconds: float | None = None
    building: int | None = None
    building_purpose: str | None = None
    building_position: int | None = None
    skipped: tuple[int, ...] = ()
    code_version: int | None = None
    # Knowledge views: (document id, reason) for each document whose text could not be had.
    failed_documents: tuple[tuple[str, str], ...] = ()

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def phase(self) -> str:
        """What an operator wants to know first: stalled, rebuilding, verifying or running.

        ``state`` stays the runner's own (running or stalled), so feeds keep their meaning.
        """
        if self.state == STALLED or self.building_purpose is None:
            return self.state
        if self.building_purpose.startswith("abandoned "):
            return self.building_purpose  # a build whose process died (projections/build_status.py)
        return "rebuilding" if self.building_purpose == "rebuild" else "verifying"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag, "phase": self.phase, "skipped": self.skipped}


def skipped_positions(recorded: str) -> tuple[int, ...]:
    return tuple(int(p) for p in recorded.split(",") if p)


def lag_seconds(reader: NotificationReader, position: int, head: int) -> float | None:
    """Seconds between the last applied event and the head event, by their timestamps.

    Before the first event is applied, the first event stands in for the last applied one.
    None when either timestamp cannot be read (the status of a stuck view must still show).
    """
    if position >= head:
        return 0.0
    applied = event_time(reader, max(position, 1))
    newest = event_time(reader, head)
    if applied is None or newest is None:
        return None
    return max(0.0, (newest - applied).total_seconds())


def event_time(reader: NotificationReader, position: int) -> datetime | None:
    """The timestamp of the event at ``position`` (or the next one, past a gap in the ids)."""
    found = reader.read_after(position - 1, 1)
    if not found:
        return None
    try:
        return _aware(reader.decode(found[0]).event.timestamp)
    except (TopicError, ValueError, KeyError) as error:
        log.warning("cannot read the time of the event at %s: %s", found[0].id, error)
        return None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
