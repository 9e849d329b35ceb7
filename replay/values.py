"""Plain JSON values of events and aggregates, and points in the log as people type them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from event_store.events_table import normalize_hex
from event_store.values import (
    SUMMARY_SKIP,
    SUMMARY_SKIP_ALL,
    aware,
    event_fields,
    event_json,
    plain,
)

__all__ = [
    "SUMMARY_SKIP",
    "SUMMARY_SKIP_ALL",
    "BadInput",
    "aggregate_json",
    "aware",
    "event_fields",
    "event_json",
    "event_summary",
    "is_id_prefix",
    "one_line",
    "parse_point",
    "parse_position",
    "parse_time",
    "plain",
    "short",
]

MIN_PREFIX = 4
HEX = frozenset("0123456789abcdef")


class BadInput(Exception):
    """A value given on the command line that no command could accept."""


# -- plain values (the event forms themselves live in event_store.values) ------------------------


def short(ident: object) -> str:
    return str(ident)[:8]


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
