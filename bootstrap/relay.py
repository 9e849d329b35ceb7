"""Wires the relay (event_store/relay/) from a Janus: its log, lock, status table and settings."""

from __future__ import annotations

from typing import Any

from bootstrap.container import Janus
from bootstrap.settings import Settings
from event_store.relay.loop import LOCK_ROLE, Relay, RelayConfig
from event_store.relay.status import RelayStatus, read_relay_status


def relay_config(settings: Settings) -> RelayConfig:
    url = settings.database_url
    return RelayConfig(
        nats_url=settings.nats_url,
        stream=settings.stream_spec(),
        node_id=settings.node_id,
        app_name=settings.app_name,
        listen_conninfo=url.replace("postgresql+psycopg", "postgresql") if url else None,
        connect_timeout_seconds=settings.connect_timeout_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        max_in_flight=settings.relay_max_in_flight,
    )


def build_relay(janus: Janus, **options: Any) -> Relay:
    """The relay for ``janus``'s log and settings; ``options`` tune the pipeline (tests, bench)."""
    return Relay(
        janus.app,
        janus.reader,
        janus.leader_lock(LOCK_ROLE),
        relay_config(janus.settings),
        janus.views_engine,
        **options,
    )


def relay_status(janus: Janus, heartbeat_seconds: float = 5.0) -> RelayStatus:
    """The relay's status as any process sees it (see ``read_relay_status``)."""
    return read_relay_status(
        janus.app, janus.reader, janus.views_engine, janus.settings.stream_name, heartbeat_seconds
    )
