"""Plain JSON values of events: the one form the CLI, the API and the object view's audit
bundles share (``replay.values`` re-exports it; projections may not import replay)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from event_store.messages import aggregate_type
from event_store.reader import LoggedEvent

__all__ = ["SUMMARY_SKIP", "SUMMARY_SKIP_ALL", "aware", "event_fields", "event_json", "plain"]

SUMMARY_SKIP = frozenset({"originator_id", "originator_version", "timestamp", "meta"})
SUMMARY_SKIP_ALL = SUMMARY_SKIP | {"originator_topic"}


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def plain(value: Any) -> Any:
    """A JSON-ready copy: ids and times as strings, enums as values, dataclasses as dicts."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return str(value)


def event_fields(event: Any) -> dict[str, Any]:
    """An event's own facts, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in SUMMARY_SKIP_ALL}


def event_json(logged: LoggedEvent) -> dict[str, Any]:
    """The stable JSON form of one event (``janus events show --json``, ``tail --json``)."""
    event = logged.event
    meta = event.meta
    return {
        "position": logged.position,
        "event_id": str(meta.event_id),
        "type": logged.type_name,
        "topic": logged.topic,
        "aggregate_type": aggregate_type(logged.topic),
        "aggregate_id": str(logged.originator_id),
        "aggregate_version": logged.originator_version,
        "timestamp": plain(event.timestamp),
        "command_id": meta.command_id,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "actor": str(meta.actor),
        "node_id": meta.node_id,
        "trace_context": dict(meta.trace_context),
        "data": plain(event_fields(event)),
    }
