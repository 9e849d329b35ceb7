"""Pull requests for a JetStream feed, cheaper than ``PullSubscription.fetch``."""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, Header
from nats.js.errors import APIError

# Statuses that end a pull request without an error: no messages (404), the request expired
# (408), or a conflict such as a deleted consumer (409), which the watchdog then looks into.
_REQUEST_ENDED = frozenset({"404", "408", "409"})
_HEARTBEAT = "100"


class Puller:
    """Pull requests on a plain subscription whose callback collects what they deliver.

    ``PullSubscription.fetch`` waits for every message in an asyncio task of its own, which
    costs more than all the rest the feed does with a message before projecting it. Here a
    request's deliveries go into a list and the fetch is woken once, when the request is over:
    its batch is full or the server sent the status that ends it.

    Like ``fetch``: first a ``no_wait`` request takes what is there at once; only when nothing
    is, a request that waits (for one message, then again ``no_wait`` for the rest, so a batch
    never waits to fill up). A request the server forgot (a restart) ends at the timeout.
    Deliveries of an abandoned request still arrive: they are kept for the next fetch, and the
    feed sorts them by stream sequence like any other.
    """

    def __init__(self, nc: NatsClient, stream: str, consumer: str) -> None:
        self._nc = nc
        self._subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._received: list[Msg] = []
        self._wanted = 0
        self._over: asyncio.Future[None] | None = None
        self._error: APIError | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; TimeoutError when none came within ``timeout``."""
        if not self._received and not await self._request(batch, timeout, no_wait=True):
            if not await self._request(1, timeout, expires=timeout):
                raise TimeoutError
            if batch > 1:
                await self._request(batch - 1, timeout, no_wait=True)
        taken, self._received = self._received[:batch], self._received[batch:]
        return taken

    async def _request(
        self, batch: int, timeout: float, no_wait: bool = False, expires: float | None = None
    ) -> bool:
        """One pull request, until it is over; whether anything has been received."""
        request: dict[str, object] = {"batch": batch}
        if no_wait:
            request["no_wait"] = True
        if expires is not None:
            # A little before the fetch gives up, so its end arrives within this request.
            request["expires"] = max(1, int(expires * 1e9) - 1_000_000)
        self._wanted = len(self._received) + batch
        self._error = None
        self._over = asyncio.get_running_loop().create_future()
        try:
            await self._nc.publish(self._subject, json.dumps(request).encode(), self._inbox)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._over
        finally:
            self._over = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return bool(self._received)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(Header.STATUS.value) if msg.headers else None
        if status is None:
            self._received.append(msg)
            if len(self._received) >= self._wanted:
                self._end()
        elif status != _HEARTBEAT and self._over is not None:
            if status not in _REQUEST_ENDED:
                self._error = _api_error(msg)
            self._end()

    def _end(self) -> None:
        if self._over is not None and not self._over.done():
            self._over.set_result(None)


def _api_error(msg: Msg) -> APIError:
    try:
        APIError.from_msg(msg)
    except APIError as error:
        return error
    return APIError()
