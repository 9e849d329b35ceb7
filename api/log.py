"""The notification log as the API shows it: every event, in order, with its provenance."""

from __future__ import annotations

from pydantic_core import to_jsonable_python

from api import schemas as s
from domain.meta import EventMeta
from event_store.reader import LoggedEvent, NotificationReader

_NOT_DATA = frozenset(
    {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}
)
# Not secrets (the keys themselves are never recorded), but nobody reading the log needs them.
_WITHHELD = frozenset({"key_hash"})


def event_out(logged: LoggedEvent) -> s.EventOut:
    event = logged.event
    fields = vars(event)
    data = {k: v for k, v in fields.items() if k not in _NOT_DATA and k not in _WITHHELD}
    meta = fields.get("meta")
    return s.EventOut(
        position=logged.position,
        type=logged.type_name,
        topic=logged.topic,
        aggregate_id=logged.originator_id,
        aggregate_version=logged.originator_version,
        recorded_at=event.timestamp,
        meta=_meta(meta) if isinstance(meta, EventMeta) else None,
        data=to_jsonable_python(data, fallback=str),
    )


def _meta(meta: EventMeta) -> s.EventMetaOut:
    return s.EventMetaOut(
        event_id=meta.event_id,
        command_id=meta.command_id,
        correlation_id=meta.correlation_id,
        causation_id=meta.causation_id,
        actor=s.ActorOut(kind=meta.actor.kind.value, id=meta.actor.id, role=meta.actor.role),
        node_id=meta.node_id,
        trace_context=dict(meta.trace_context),
    )


def read_events(reader: NotificationReader, after: int, limit: int) -> list[s.EventOut]:
    return [event_out(reader.decode(n)) for n in reader.read_after(after, limit)]


def page(reader: NotificationReader, after: int, limit: int) -> s.EventPage:
    head = reader.head()
    items = read_events(reader, after, limit)
    return s.EventPage(items=items, next_after=items[-1].position if items else after, head=head)
