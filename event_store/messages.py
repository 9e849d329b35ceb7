"""The wire contract between the relay and every JetStream consumer. Change it in one place.

A message is one stored event: the body is the stored ``state`` bytes exactly as in the event
store (so consumers decode with the same mapper and upcasters), and the headers carry what a
consumer needs to route, order and deduplicate without decoding the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import Notification
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

H_TOPIC = "Janus-Topic"
H_EVENT_TYPE = "Janus-Event-Type"
H_AGGREGATE_ID = "Janus-Aggregate-Id"
H_AGGREGATE_VERSION = "Janus-Aggregate-Version"
H_POSITION = "Janus-Position"
H_CORRELATION_ID = "Janus-Correlation-Id"
H_TRACEPARENT = "traceparent"
H_MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subject_prefix: str
    max_age_seconds: int
    max_bytes: int
    duplicate_window_seconds: int

    @property
    def subjects(self) -> list[str]:
        return [f"{self.subject_prefix}.>"]

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description="Janus event log, relayed in log order",
            subjects=self.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=float(self.max_age_seconds),
            max_bytes=self.max_bytes,
            duplicate_window=float(self.duplicate_window_seconds),
        )


def aggregate_type(topic: str) -> str:
    """``domain.goal:Goal.Submitted`` -> ``Goal``: subjects name the aggregate type."""
    qualname = topic.rsplit(":", 1)[-1]
    return qualname.split(".", 1)[0]


def event_type(topic: str) -> str:
    return topic.rsplit(":", 1)[-1]


def subject_for(prefix: str, topic: str) -> str:
    return f"{prefix}.{aggregate_type(topic)}"


def message_id(node_id: str, app_name: str, position: int) -> str:
    return f"{node_id}:{app_name}:{position}"


def headers_for(
    notification: Notification,
    node_id: str,
    app_name: str,
    correlation_id: str = "",
    traceparent: str = "",
) -> dict[str, str]:
    headers = {
        H_MSG_ID: message_id(node_id, app_name, notification.id),
        H_TOPIC: notification.topic,
        H_EVENT_TYPE: event_type(notification.topic),
        H_AGGREGATE_ID: str(notification.originator_id),
        H_AGGREGATE_VERSION: str(notification.originator_version),
        H_POSITION: str(notification.id),
        H_CORRELATION_ID: correlation_id,
    }
    if traceparent:
        headers[H_TRACEPARENT] = traceparent
    return headers


def notification_from_message(headers: dict[str, str], body: bytes) -> Notification:
    """Rebuild what the relay read from the log, so consumers share the log's decoding path."""
    try:
        return Notification(
            id=int(headers[H_POSITION]),
            originator_id=UUID(headers[H_AGGREGATE_ID]),
            originator_version=int(headers[H_AGGREGATE_VERSION]),
            topic=headers[H_TOPIC],
            state=body,
        )
    except (KeyError, ValueError) as error:
        raise ValueError(f"not a Janus event message: {error!r}") from error
