"""Runs projections with the feed the settings call for.

With ``nats_url`` set each projection is fed from its JetStream consumer, by whichever process
holds that projection's leader lock (two pullers on one ordered consumer would split its
messages between them). Without NATS the same projections follow the notification log, as the
all-in-one process does; there a second follower is harmless, its runner just finds the
position already moved.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Sequence

import psycopg

from adapters.locks import LeaderLock
from projections.jetstream import STORE_ERRORS, FeedConfig, JetStreamFeed, pause
from projections.registry import FeedSource, Projections, Runner

log = logging.getLogger(__name__)

ALL = "all"
LOCK_CHECK_SECONDS = 5.0
LOCK_RETRY_SECONDS = 2.0
LOG_BACKOFF_MAX = 5.0


class UnknownProjection(ValueError):
    pass


def select_runners(projections: Projections, name: str) -> list[Runner]:
    runners = projections.runners
    if name == ALL:
        return list(runners.values())
    if name not in runners:
        known = ", ".join([*runners, ALL])
        raise UnknownProjection(f"no projection named {name!r} (known: {known})")
    return [runners[name]]


class _ReadyWhenAll:
    """Calls ``on_ready`` once, when each of ``count`` feeds has said it is ready."""

    def __init__(self, count: int, on_ready: Callable[[], None]) -> None:
        self._waiting = count
        self._on_ready = on_ready
        self._seen: set[str] = set()

    def ready(self, name: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        if len(self._seen) == self._waiting:
            self._on_ready()


class ProjectorProcess:
    def __init__(
        self,
        projections: Projections,
        runners: Sequence[Runner],
        source: FeedSource,
        config: FeedConfig | None = None,
    ) -> None:
        self.projections = projections
        self.source = source
        self.runners = list(runners)
        self.config = config or FeedConfig()
        self.feeds: dict[str, JetStreamFeed] = {}
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed_stops: set[asyncio.Event] = set()

    @classmethod
    def named(
        cls,
        projections: Projections,
        source: FeedSource,
        name: str,
        config: FeedConfig | None = None,
    ) -> ProjectorProcess:
        return cls(projections, select_runners(projections, name), source, config)

    @property
    def uses_jetstream(self) -> bool:
        return self.source.nats_url is not None

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Feed every projection until ``stop()``; ``on_ready`` once all are being fed.

        The runners must be set up already, as ``Janus.build`` does for its own."""
        ready = on_ready or (lambda: None)
        if self.uses_jetstream:
            asyncio.run(self._run_jetstream(ready))
        else:
            self._run_log(ready)

    def stop(self) -> None:
        """Safe from any thread and from a signal handler."""
        self._stop.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_feeds)

    def _stop_feeds(self) -> None:
        for event in self._feed_stops:
            event.set()

    # -- JetStream -------------------------------------------------------------------------------

    async def _run_jetstream(self, on_ready: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        ready = _ReadyWhenAll(len(self.runners), on_ready)
        await asyncio.gather(*(self._lead(runner, ready) for runner in self.runners))

    async def _lead(self, runner: Runner, ready: _ReadyWhenAll) -> None:
        nats_url = self.source.nats_url
        assert nats_url is not None
        feed = JetStreamFeed(runner, nats_url, self.source.stream, self.config)
        self.feeds[runner.name] = feed
        lock = self.projections.leader_lock(f"projector-{feed.consumer}")
        while not self._stop.is_set():
            if not await self._acquire(lock, feed.consumer):
                continue
            try:
                await self._feed_while_leader(feed, lock, lambda: ready.ready(runner.name))
            finally:
                lock.release()

    async def _acquire(self, lock: LeaderLock, name: str) -> bool:
        try:
            return await asyncio.to_thread(lock.acquire, math.inf, self._stop)
        except (psycopg.Error, OSError) as error:
            log.warning("%s: leader lock unavailable (%r); retrying", name, error)
            await asyncio.to_thread(self._stop.wait, LOCK_RETRY_SECONDS)
            return False

    async def _feed_while_leader(
        self, feed: JetStreamFeed, lock: LeaderLock, on_ready: Callable[[], None]
    ) -> None:
        feed_stop = asyncio.Event()
        self._feed_stops.add(feed_stop)
        if self._stop.is_set():  # stop() ran before this event existed
            feed_stop.set()
        watcher = asyncio.create_task(self._watch_lock(lock, feed_stop, feed.consumer))
        try:
            await feed.run(feed_stop, on_ready)
        finally:
            feed_stop.set()
            self._feed_stops.discard(feed_stop)
            await watcher

    async def _watch_lock(self, lock: LeaderLock, feed_stop: asyncio.Event, name: str) -> None:
        """End the feed when its lock's session died, as someone else may hold the lock now;
        the caller then waits to lead again."""
        while not feed_stop.is_set():
            await pause(feed_stop, LOCK_CHECK_SECONDS)
            if not feed_stop.is_set() and not await asyncio.to_thread(lambda: lock.held):
                log.warning("%s: lost the leader lock; stopping until it is won again", name)
                feed_stop.set()

    # -- notification log ------------------------------------------------------------------------

    def _run_log(self, on_ready: Callable[[], None]) -> None:
        threads = [
            threading.Thread(
                target=self._follow_log, args=(runner,), name=f"projector-{runner.name}"
            )
            for runner in self.runners
        ]
        for thread in threads:
            thread.start()
        on_ready()
        for thread in threads:
            thread.join()

    def _follow_log(self, runner: Runner) -> None:
        poll = self.source.poll_interval_seconds
        failures = 0
        while not self._stop.is_set():
            try:
                applied = runner.run_once()
            except STORE_ERRORS as error:
                failures += 1
                if failures == 1:  # once per outage
                    log.warning("%s: store unavailable (%r); retrying", runner.name, error)
                self._stop.wait(min(LOG_BACKOFF_MAX, poll * 2**failures))
                continue
            if failures:
                log.warning("%s: store available again", runner.name)
                failures = 0
            if applied == 0:
                self._stop.wait(poll)
