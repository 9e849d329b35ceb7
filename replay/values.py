"""Plain JSON values of events and aggregates, and points in the log as people type them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from event_store.events_table import normalize_hex
from event_store.messages import aggregate_type
from event_store.reader import LoggedEvent

SUMMARY_SKIP = frozenset({"originator_id", "originator_version", "timestamp", "meta"})
SUMMARY_SKIP_ALL = SUMMARY_SKIP | {"originator_topic"}
MIN_PREFIX = 4
HEX = frozenset("0123456789abcdef")


class BadInput(Exception):
    """A value given on the command line that no command could accept."""


# -- plain values ------------------------------------------------------------------------------


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


def short(ident: object) -> str:
    return str(ident)[:8]


def event_fields(event: Any) -> dict[str, Any]:
    """An event's own facts, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in SUMMARY_SKIP_ALL}


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def event_summary(event: Any, limit: int = 100) -> str:
    parts = []
    for key, value in event_fields(event).items():
        shown = plain(value)
        if isinstance(shown, dict | list):
            shown = json.dumps(shown, sort_keys=True)
        parts.append(f"{key}={shown}")
    return one_line(", ".join(parts), limit)


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


def aggregate_json(aggregate: Any, position: int | None = None) -> dict[str, Any]:
    """An aggregate's state as plain JSON: its envelope, then its public attributes."""
    state = {k: plain(v) for k, v in vars(aggregate).items() if not k.startswith("_")}
    body: dict[str, Any] = {
        "id": str(aggregate.id),
        "type": type(aggregate).__qualname__,
        "version": aggregate.version,
        "created_on": plain(aggregate.created_on),
        "modified_on": plain(aggregate.modified_on),
        "state": state,
    }
    if position is not None:
        body["last_position"] = position
    return body


# -- points in the log -------------------------------------------------------------------------


def parse_position(text: str, what: str = "position") -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a log position (a whole number)") from None
    if value < 0:
        raise BadInput(f"{what} {text!r} is negative")
    return value


def parse_point(text: str, what: str = "point") -> int | datetime:
    """A log position (``1234``) or an ISO-8601 time (``2025-11-22T04:57:00Z``; naive = UTC)."""
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{what} {text!r} is neither a log position nor an ISO-8601 timestamp"
        ) from None
    return aware(when)


def parse_time(text: str, what: str = "time") -> datetime:
    point = parse_point(text, what)
    if isinstance(point, int):
        raise BadInput(f"{what} {text!r} must be an ISO-8601 timestamp, not a position")
    return point


def is_id_prefix(value: str) -> bool:
    text = normalize_hex(value)
    return len(text) >= MIN_PREFIX and set(text) <= HEX
