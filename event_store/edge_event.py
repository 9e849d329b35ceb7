"""One edge event as the cloud receives it (over the hub stream, or from the edge's export)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import StoredEvent


@dataclass(frozen=True)
class EdgeEvent:
    """One edge event as it arrived: who sent it, where it sat in the edge stream, the event."""

    node: str
    origin_sequence: int
    event_id: UUID
    stored: StoredEvent

    @property
    def place(self) -> tuple[UUID, int]:
        """Where the event sits in its aggregate's history: (aggregate id, version)."""
        ident = self.stored.originator_id
        ident = ident if isinstance(ident, UUID) else UUID(str(ident))
        return ident, self.stored.originator_version
