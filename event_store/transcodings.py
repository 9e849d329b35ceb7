"""How event provenance is written as JSON. Changing a name here breaks every stored event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.meta import Actor, ActorKind, EventMeta


class ActorAsDict(Transcoding):
    type = Actor
    name = "janus_actor"

    def encode(self, obj: Actor) -> dict[str, Any]:
        return {"kind": obj.kind.value, "id": obj.id, "role": obj.role}

    def decode(self, data: dict[str, Any]) -> Actor:
        return Actor(ActorKind(data["kind"]), data["id"], data.get("role"))


class EventMetaAsDict(Transcoding):
    type = EventMeta
    name = "janus_meta"

    def encode(self, obj: EventMeta) -> dict[str, Any]:
        return {
            "event_id": obj.event_id.hex,
            "command_id": obj.command_id,
            "correlation_id": obj.correlation_id,
            "causation_id": obj.causation_id,
            "actor": obj.actor,
            "node_id": obj.node_id,
            "trace_context": obj.trace_context,
        }

    def decode(self, data: dict[str, Any]) -> EventMeta:
        return EventMeta(
            event_id=UUID(data["event_id"]),
            command_id=data["command_id"],
            correlation_id=data["correlation_id"],
            causation_id=data["causation_id"],
            actor=data["actor"],
            node_id=data["node_id"],
            trace_context=dict(data.get("trace_context") or {}),
        )


def register_janus_transcodings(transcoder: JSONTranscoder) -> None:
    transcoder.register(ActorAsDict())
    transcoder.register(EventMetaAsDict())
