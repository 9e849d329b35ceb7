"""The loops every kind of projection runner shares: catch up to the head, wait for a
position, run until stopped.

A runner says how to apply its next batch (``run_once``) and where its progress stands
(``_progress``); how it stores its position differs (one transaction with the view for SQL views,
projections/runner.py; after an idempotent write to the target for the knowledge views,
projections/knowledge.py), the loops around it do not.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from eventsourcing.persistence import Notification

from event_store.reader import NotificationReader
from projections.positions import STALLED


class ProjectionStalled(RuntimeError):
    pass


class Applied(NamedTuple):
    """What a batch did: how many events it applied, and the stored position after it (None
    when another runner moved the position, so only reading it tells)."""

    applied: int
    position: int | None


class Progress(NamedTuple):
    """The cheap read of a runner's position row the loops need (``status()`` also reads the
    log)."""

    position: int
    state: str
    error: str | None
    error_position: int | None


class FeedLoop(ABC):
    name: str
    reader: NotificationReader

    @abstractmethod
    def _progress(self) -> Progress | None:
        """The stored progress; None before the runner has registered its position."""

    @property
    @abstractmethod
    def position(self) -> int:
        """The position last stored."""

    @abstractmethod
    def run_once(self) -> int:
        """Apply the next batch from the notification log; returns how many were applied."""

    @abstractmethod
    def apply(self, batch: Sequence[Notification]) -> Applied:
        """Apply notifications past the stored position (any feed may deliver twice)."""

    def apply_batch(self, batch: Sequence[Notification]) -> int:
        """Apply notifications in order, skipping any at or below the stored position.

        Any feed may call this (the log itself, or a JetStream consumer): redelivered and old
        events are dropped by position, so every hop upstream may deliver at least once.
        """
        return self.apply(batch).applied

    def catch_up(self, timeout: float = 60.0) -> int:
        """Apply everything up to the head as of now. Raises ProjectionStalled on a poison event."""
        target = self.reader.head()
        deadline = time.monotonic() + timeout
        while True:
            progress = self._progress()
            if progress is not None and progress.state == STALLED:
                raise ProjectionStalled(
                    f"{self.name} stalled at {progress.error_position}: {progress.error}"
                )
            if progress is not None and progress.position >= target:
                return progress.position
            if self.run_once() == 0:
                # Nothing left to apply (or another runner applied it): done, unless it stalled.
                after = self._progress()
                if after is not None and after.state != STALLED:
                    return after.position
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not reach {target} in {timeout}s")

    def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Read-your-writes: block until this view has applied ``position``."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while self.position < position:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not reach position {position} in {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(poll_interval)


def strictly_rising(batch: Sequence[Notification], position: int) -> list[Notification]:
    """Keep each notification only if it is past everything before it.

    A feed that redelivers inside one batch (JetStream after a reconnect) would otherwise apply
    the same event twice, and one arriving out of order would move the position backwards.
    """
    fresh: list[Notification] = []
    for notification in batch:
        if notification.id > position:
            fresh.append(notification)
            position = notification.id
    return fresh
