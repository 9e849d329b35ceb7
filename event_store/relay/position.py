"""The relay's saved position: ``relay:<stream>`` in the event store's tracking table.

It only ever moves to an acknowledged position, in the background while busy (at most every
``save_interval``) and at once when idle or stopping. Single-row tracking refuses to go back,
which is how a relay learns that another one took over and saved a later position.
"""

from __future__ import annotations

import asyncio
import time

from eventsourcing.persistence import IntegrityError, Tracking

from event_store.application import JanusApplication


class LeadershipLost(Exception):
    """Another relay may now be active: stop publishing and queue for the lock again."""


class SavedPosition:
    """Where a restart resumes from; one save at a time."""

    def __init__(self, app: JanusApplication, name: str, save_interval: float) -> None:
        self._app = app
        self._name = name
        self._save_interval = save_interval
        self.saved = 0
        self._saving: asyncio.Task[None] | None = None
        self._last_save = 0.0

    async def reload(self) -> int:
        """The stored position, if another run saved beyond what this one knows."""
        stored = await asyncio.to_thread(self._app.tracked_position, self._name)
        self.saved = max(self.saved, stored)
        return self.saved

    async def save(self, acked: int) -> None:
        """Store ``acked`` in the background, at most every ``save_interval``.

        One save at a time; a failed save raises here, on the next call.
        """
        if self._saving is not None:
            if not self._saving.done():
                return
            saving, self._saving = self._saving, None
            saving.result()
        due = time.monotonic() - self._last_save >= self._save_interval
        if acked > self.saved and due:
            self._last_save = time.monotonic()
            self._saving = asyncio.create_task(self._store(acked))

    async def save_now(self, acked: int) -> None:
        """Wait for the save in flight, then store ``acked`` if it is newer."""
        if self._saving is not None:
            saving, self._saving = self._saving, None
            await saving
        if acked > self.saved:
            await self._store(acked)

    async def _store(self, position: int) -> None:
        tracking = Tracking(self._name, position)
        try:
            await asyncio.to_thread(self._app.process_recorder.insert_tracking, tracking)
        except IntegrityError as error:
            # Single-row tracking refuses to go back: another relay saved a later position.
            raise LeadershipLost(f"position {position} already passed: {error}") from error
        self.saved = position
