"""The audit trail's rows: one per event (command records aside), with a short summary."""

from __future__ import annotations

from typing import Any

from event_store.reader import LoggedEvent

_NOT_SUMMARIZED = frozenset(
    {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}
)
SUMMARY_CHARS = 500


def _summary(event: Any) -> str:
    parts, size = [], 0
    for name, value in vars(event).items():
        if name in _NOT_SUMMARIZED:
            continue
        part = f"{name}={value}"
        parts.append(part)
        size += len(part) + 2
        if size > SUMMARY_CHARS:  # the rest would be cut off anyway
            break
    text = ", ".join(parts)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def audit_row(logged: LoggedEvent, aggregate_id: str) -> dict[str, Any]:
    event = logged.event
    meta = event.meta
    return {
        "position": logged.position,
        "event_id": str(meta.event_id),
        "event_type": logged.type_name,
        "aggregate_id": aggregate_id,
        "aggregate_version": logged.originator_version,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "command_id": meta.command_id,
        "actor": str(meta.actor),
        "node_id": meta.node_id,
        "recorded_at": event.timestamp,
        "summary": _summary(event),
    }
