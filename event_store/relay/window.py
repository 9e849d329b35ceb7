"""The relay's in-flight window: pipelined publishes, their acks, and the ordering headers.

At most ``max_in_flight`` publishes are unacknowledged; ``acked`` only moves to the end of the
contiguous acknowledged prefix. Each publish carries ``Nats-Expected-Last-Msg-Id`` (its
predecessor's message id: its event id), and the first one of an attempt
``Nats-Expected-Last-Sequence``, so the server stores an event only right after its predecessor
(see ``loop`` for why).

Acks come to our own reply inbox, ``<inbox>.<attempt>.<position>``, rather than
``js.publish_async``: in nats-py 2.16 an error reply leaves the ``publish_async`` future pending
forever (nats-io/nats.py#985) and its futures have no timeout; the inbox token is the event's
position, which is also cheaper than a future each. A late answer to an abandoned attempt is
recognised by its attempt number and ignored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from uuid import UUID

from eventsourcing.persistence import Notification
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from event_store.messages import H_MSG_ID, StreamSpec, headers_for, scan_event_id, subject_for
from event_store.reader import NotificationReader
from event_store.relay.provenance import provenance

H_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
H_EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
NO_RESPONDERS = "503"


class PublishFailed(Exception):
    """This attempt's pipeline broke (rejection, timeout, disconnect); re-sync and go on."""


class PublishWindow:
    """The publishes of one attempt at a time that the server has not acknowledged yet."""

    def __init__(
        self,
        spec: StreamSpec,
        node_id: str,
        app_name: str,
        reader: NotificationReader,
        *,
        ack_timeout: float,
        max_in_flight: int,
    ) -> None:
        self._spec = spec
        self._node_id = node_id
        self._app_name = app_name
        self._reader = reader
        self._ack_timeout = ack_timeout
        self._max_in_flight = max_in_flight
        self._subjects: dict[str, str] = {}
        self.acked = 0
        self.published = 0
        self.duplicates = 0
        self._nc: NatsClient | None = None
        self._inbox = ""
        # Per attempt: the window of unacknowledged positions and the replies that came back.
        self._epoch = 0
        self._window: deque[tuple[int, float]] = deque()
        self._replies: dict[int, bool] = {}
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiting_for = -1
        self._previous_msg_id: str | None = None
        self._expected_sequence: int | None = None

    async def attach(self, nc: NatsClient) -> None:
        """Take acks on this connection (once: nats-py reconnects it on its own)."""
        self._nc = nc
        self._inbox = f"{nc.new_inbox()}."
        await nc.subscribe(f"{self._inbox}*.*", cb=self._on_reply)

    def new_attempt(self) -> None:
        """Forget the previous attempt's publishes: their acks are ignored from now on."""
        self._epoch += 1
        self._window.clear()
        self._replies.clear()
        self._failure = None

    def continue_after(self, position: int, last_sequence: int) -> None:
        """The stream ends with ``position`` at ``last_sequence``: publish what follows it."""
        self.acked = position
        self._previous_msg_id = None
        self._expected_sequence = last_sequence

    async def publish(self, batch: list[Notification]) -> None:
        nc = self._nc
        assert nc is not None
        if not nc.is_connected:
            raise PublishFailed("not connected to nats")
        publish = nc.publish
        window = self._window
        limit = self._max_in_flight
        reply_prefix = f"{self._inbox}{self._epoch}."
        for notification in batch:
            if len(window) >= limit:
                await self.wait_for_room(limit)
            position = notification.id
            await publish(
                self._subject(notification.topic),
                notification.state,
                reply=f"{reply_prefix}{position}",
                headers=self._headers(notification),
            )
            window.append((position, time.monotonic()))
        self.published += len(batch)
        self._pop_acked()

    def _subject(self, topic: str) -> str:
        subject = self._subjects.get(topic)
        if subject is None:
            subject = self._subjects[topic] = subject_for(self._spec.subject_prefix, topic)
        return subject

    def _headers(self, notification: Notification) -> dict[str, str]:
        correlation_id, traceparent = provenance(self._reader, notification)
        event_id = self._event_id(notification)
        headers = headers_for(
            notification, self._node_id, self._app_name, correlation_id, traceparent, event_id
        )
        if self._previous_msg_id is not None:
            headers[H_EXPECTED_LAST_MSG_ID] = self._previous_msg_id
        elif self._expected_sequence is not None:
            headers[H_EXPECTED_LAST_SEQUENCE] = str(self._expected_sequence)
        self._previous_msg_id = headers[H_MSG_ID]
        return headers

    def _event_id(self, notification: Notification) -> UUID:
        """The message id: found in the bytes, or (a cipher, a compressor) by decoding."""
        found = scan_event_id(notification.state)
        if found is not None:
            return found
        meta = getattr(self._reader.decode(notification).event, "meta", None)
        if meta is None:
            raise ValueError(f"the event at {notification.id} has no Janus metadata")
        event_id: UUID = meta.event_id
        return event_id

    async def _on_reply(self, msg: Msg) -> None:
        epoch, _, token = msg.subject[len(self._inbox) :].partition(".")
        if epoch != str(self._epoch):
            return  # a late answer to an abandoned attempt
        position = int(token)
        data = msg.data
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            self.fail(PublishFailed(f"no stream answers on {self._spec.subject_prefix}.>"))
            return
        # A PubAck is {"stream":..,"seq":..[,"duplicate":true]}; parse JSON only for errors.
        if b'"error"' in data:
            error = json.loads(data)["error"]
            description = error.get("description", error)
            self.fail(PublishFailed(f"position {position} rejected: {description}"))
            return
        self._replies[position] = b'"duplicate":true' in data
        if position == self._waiting_for:
            self._wake_waiter()

    def fail(self, error: BaseException) -> None:
        """End this attempt: the next look at the window raises PublishFailed."""
        if self._failure is None:
            self._failure = error
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pop_acked(self) -> None:
        """Advance over the contiguous acknowledged prefix of the window, in log order."""
        window, replies = self._window, self._replies
        acked = self.acked
        while window and window[0][0] in replies:
            acked = window.popleft()[0]
            if replies.pop(acked):
                self.duplicates += 1
        self.acked = acked
        if self._failure is not None:
            raise PublishFailed(str(self._failure)) from self._failure

    async def wait_for_room(self, limit: int) -> None:
        """Until fewer than ``limit`` publishes are unacknowledged; each gets ``ack_timeout``."""
        loop = asyncio.get_running_loop()
        while True:
            self._pop_acked()
            if len(self._window) < limit:
                return
            position, sent_at = self._window[0]
            remaining = sent_at + self._ack_timeout - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no ack for position {position} in {self._ack_timeout}s")
            self._waiting_for = position
            self._waiter = loop.create_future()
            timer = loop.call_later(remaining, self._wake_waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
                self._waiting_for = -1
