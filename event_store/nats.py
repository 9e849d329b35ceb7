"""What the relay and every JetStream consumer share about NATS: the retryable errors and the
stream policy. Change either here, once.

The relay is the stream's only writer, so it *reconciles*: it creates the stream or brings its
configuration to the spec. A consumer only *verifies*: it creates a missing stream (so it can
start before the relay) but never rewrites one; a stream with other subjects is not this log's
copy and is refused, while other settings that differ (limits, duplicate window) are the relay's
to put right. Both compare the same fields the same way (``stream_differences``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import nats.errors
import nats.js.errors
import psycopg
from eventsourcing.persistence import PersistenceError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from sqlalchemy.exc import SQLAlchemyError

from event_store.messages import StreamSpec

log = logging.getLogger("janus.nats")

# "NATS or the store is not reachable right now": retried with backoff, never fatal.
NATS_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, OSError, asyncio.TimeoutError)
STORE_ERRORS: tuple[type[Exception], ...] = (
    PersistenceError,
    psycopg.Error,
    sqlite3.Error,
    SQLAlchemyError,
)


class StreamMismatch(RuntimeError):
    """The stream cannot be a copy of this log: fix the settings, retrying will not help."""


def stream_differences(current: StreamConfig, spec: StreamSpec) -> set[str]:
    """The configuration fields (subjects, limits, duplicate window, ...) not as ``spec`` says."""
    have = current.as_dict()
    return {key for key, value in spec.config().as_dict().items() if have.get(key) != value}


async def ensure_stream(
    js: JetStreamContext, spec: StreamSpec, *, reconcile: bool, who: str
) -> None:
    """Create the stream if missing; then reconcile it to ``spec`` (the relay) or verify it
    (a consumer: StreamMismatch when its subjects differ). Never deletes a stream."""
    try:
        info = await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(spec.config())
        log.info("%s: created stream %s", who, spec.name)
        return
    changed = stream_differences(info.config, spec)
    if not changed:
        return
    if reconcile:
        await js.update_stream(spec.config())
        log.info("%s: updated stream %s (%s)", who, spec.name, ", ".join(sorted(changed)))
    elif "subjects" in changed:
        raise StreamMismatch(
            f"stream {spec.name} has subjects {info.config.subjects}, expected {spec.subjects}"
        )
    else:
        log.debug(
            "%s: stream %s differs in %s; the relay brings it to the spec", who, spec.name, changed
        )
