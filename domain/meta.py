"""Provenance stamped on every event: who acted, for which command, caused by what, where."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID, uuid4


class ActorKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    SCHEDULER = "scheduler"
    SYSTEM = "system"
    NODE = "node"


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    role: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(ActorKind.SYSTEM, name)


@dataclass(frozen=True)
class CommandContext:
    """What a command service knows about the intent behind the events it is about to record.

    One context covers every event a single command produces; each event still gets its own id.
    """

    command_id: str
    correlation_id: str
    causation_id: str
    actor: Actor
    node_id: str
    trace_context: dict[str, str] = field(default_factory=dict)

    def stamp(self) -> EventMeta:
        return EventMeta(
            event_id=uuid4(),
            command_id=self.command_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            actor=self.actor,
            node_id=self.node_id,
            trace_context=dict(self.trace_context),
        )


@dataclass(frozen=True)
class EventMeta:
    event_id: UUID
    command_id: str
    correlation_id: str
    causation_id: str
    actor: Actor
    node_id: str
    trace_context: dict[str, str] = field(default_factory=dict)
