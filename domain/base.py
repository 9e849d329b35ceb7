"""The aggregate base every Janus aggregate shares: events carry provenance and a unique id."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidValue
from domain.meta import CommandContext, EventMeta

JANUS_NAMESPACE = uuid5(NAMESPACE_URL, "https://janus.invalid/ids")

MAX_TEXT = 8_000
MAX_NAME = 200

T = TypeVar("T", bound="JanusAggregate")


def derived_id(*parts: object) -> UUID:
    """A deterministic id, so that two writers racing to create the same thing collide."""
    return uuid5(JANUS_NAMESPACE, ":".join(str(p) for p in parts))


def require_text(
    field: str, value: str, *, limit: int = MAX_TEXT, allow_empty: bool = False
) -> str:
    if not allow_empty and not value.strip():
        raise InvalidValue(f"{field} must not be empty")
    if len(value) > limit:
        raise InvalidValue(f"{field} is {len(value)} characters long; the limit is {limit}")
    return value


class JanusAggregate(Aggregate):
    class Event(Aggregate.Event):
        meta: EventMeta

    class Created(Event, Aggregate.Created):
        pass

    @classmethod
    def _open(cls: type[T], event_class: type[Any], ctx: CommandContext, **fields: Any) -> T:
        return cls._create(event_class, meta=ctx.stamp(), **fields)

    def _record(self, event_class: type[Any], ctx: CommandContext, **fields: Any) -> None:
        self.trigger_event(event_class, meta=ctx.stamp(), **fields)
