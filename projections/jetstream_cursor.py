"""Where a feed's durable consumer starts: the stream sequence after the view's position.

The consumer is only a cursor: it may be thrown away and re-created at the sequence after the
stored position whenever it is not exactly there (see ``projections.jetstream``).
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo
from nats.js.errors import NotFoundError

from event_store.messages import H_POSITION

log = logging.getLogger("projections.jetstream")


async def start_sequence(
    js: JetStreamContext, stream: str, filter_subject: str, position: int
) -> int:
    """The first stream sequence whose event is after ``position`` (binary search).

    The relay publishes in log order, so positions rise with sequences. Where they do not (a
    republish after the duplicate window) the search may land early, which costs a few
    events skipped by position, or late, which the check of the first new delivery against
    the log catches: the events in between are then taken from the log.
    """
    state = (await js.stream_info(stream)).state
    low, high = max(state.first_seq, 1), state.last_seq + 1
    if position == 0:
        return low
    while low < high:
        middle = (low + high) // 2
        found = await _position_from(js, stream, filter_subject, middle)
        if found is None or found[1] is None or found[1] > position:
            high = middle
        else:
            low = found[0] + 1
    return low


async def _position_from(
    js: JetStreamContext, stream: str, filter_subject: str, seq: int
) -> tuple[int, int | None] | None:
    """Sequence and position of the first message at or after ``seq`` (None past the end)."""
    try:
        raw = await js.get_msg(stream, seq=seq, subject=filter_subject, next=True)
    except NotFoundError:
        return None
    found = raw.seq or seq
    try:
        return found, int((raw.headers or {})[H_POSITION])
    except (KeyError, ValueError):
        return found, None  # not a Janus event: treat as "after", so the search lands early


async def ensure_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig, start: int
) -> None:
    """Keep the consumer named in ``config`` if it is reusable at ``start``, else re-create it."""
    consumer = config.name
    assert consumer is not None
    try:
        info: ConsumerInfo | None = await js.consumer_info(stream, consumer)
    except NotFoundError:
        info = None
    if info is not None and _reusable(info, start, config.filter_subject):
        return
    if info is not None:
        log.info("%s: consumer is not at sequence %s; re-creating it", consumer, start)
        await js.delete_consumer(stream, consumer)
    await js.add_consumer(stream, config)


def _reusable(info: ConsumerInfo, start: int, filter_subject: str | None) -> bool:
    """Only a consumer whose next delivery is ``start`` with nothing awaiting an ack.

    Deliveries awaiting an ack after a crash would come back only after ``ack_wait``, behind
    newer ones: that is the hole this feed must never apply across.
    """
    config = info.config
    delivered = info.delivered.stream_seq if info.delivered else -1
    return (
        config.filter_subject == filter_subject
        and config.ack_policy == AckPolicy.ALL
        and not info.num_ack_pending
        and delivered + 1 == start
    )
