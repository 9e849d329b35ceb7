"""The wire contract between the relay and every JetStream consumer. Change it in one place.

A message is one stored event: the body is the stored ``state`` bytes exactly as in the event
store (so consumers decode with the same mapper and upcasters), and the headers carry what a
consumer needs to route, order and deduplicate without decoding the body.

``Nats-Msg-Id`` is the event's own id (its meta ``event_id``), for every relay, cloud or edge: the
same event has the same message id wherever it travels, so any stream that receives it twice
(a relay's republish, a hub sourcing it again) drops the copy. Which log a message came from and
where it sits in that log are ``Janus-Log`` (``<node>:<app>``) and ``Janus-Position``.
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
H_LOG = "Janus-Log"
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


def log_id(node_id: str, app_name: str) -> str:
    """Names the log a relay publishes: a stream must hold one log's events only."""
    return f"{node_id}:{app_name}"


# The meta's first field (event_store/transcodings.py), as eventsourcing's JSON encoder writes it.
_META_EVENT_ID = b'"meta":{"_type_":"janus_meta","_data_":{"event_id":"'


def scan_event_id(state: bytes) -> UUID | None:
    """The event id by byte search (a JSON parse is most of the ingest's time); None: parse.

    The pattern cannot occur inside a JSON string (its quotes would be escaped); any other
    encoding (a cipher, a compressor) is not recognised and takes the mapper's road.
    """
    at = state.find(_META_EVENT_ID)
    if at < 0:
        return None
    start = at + len(_META_EVENT_ID)
    try:
        return UUID(state[start : state.find(b'"', start)].decode())
    except ValueError:
        return None


def message_id(event_id: UUID) -> str:
    return str(event_id)


def headers_for(
    notification: Notification,
    node_id: str,
    app_name: str,
    correlation_id: str = "",
    traceparent: str = "",
    event_id: UUID | None = None,
) -> dict[str, str]:
    """The headers of one event's message; ``event_id`` is needed only if the bytes hide it."""
    if event_id is None:
        event_id = scan_event_id(notification.state)
    if event_id is None:
        raise ValueError(f"no event id found in the stored event at {notification.id}")
    headers = {
        H_MSG_ID: message_id(event_id),
        H_LOG: log_id(node_id, app_name),
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
