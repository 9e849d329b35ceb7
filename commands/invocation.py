"""Who is asking, and under which idempotency key, correlation and trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from domain.meta import Actor


@dataclass(frozen=True)
class Invocation:
    actor: Actor
    idempotency_key: str | None = None
    causation_id: str | None = None
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    """``position`` is a log position at or after this command's events: wait on it to read them.

    A replayed answer (same idempotency key) reports the head at the time of the replay, which is
    never before the original write.
    """

    aggregate_id: UUID
    position: int
    outcome: str
    changed: bool
    replayed: bool = False
