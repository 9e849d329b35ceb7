"""Read-your-writes: a read with ?min_position=N waits, bounded, until the views have applied N."""

from __future__ import annotations

import threading
import time

from api.problems import ApiProblem, invalid_field
from event_store.reader import NotificationReader
from projections.registry import Runner
from projections.runner import ProjectionStalled

POLL_SECONDS = 0.02
STATUS_EVERY = 0.5


class ViewWaiter:
    """Waits on a view's stored position, never on a guess.

    ``drive``: when this process owns the embedded views (or nobody else runs them), a waiting
    request applies the next batch itself instead of sleeping; the runner's position claim makes
    that safe beside the projection thread. Otherwise it only watches the position.
    """

    def __init__(
        self,
        runner: Runner,
        reader: NotificationReader,
        timeout: float,
        drive: bool,
    ) -> None:
        self.runner = runner
        self.reader = reader
        self.timeout = timeout
        self.drive = drive
        self._driving = threading.Lock()

    def wait(self, position: int | None) -> None:
        if position is None or position == 0:
            return
        if self.runner.position >= position:
            return
        head = self.reader.head()
        if position > head:
            raise invalid_field(
                ("query", "min_position"), f"position {position} is ahead of the log ({head})"
            )
        deadline = time.monotonic() + self.timeout
        next_check = time.monotonic() + STATUS_EVERY
        while self.runner.position < position:
            now = time.monotonic()
            if now >= next_check:  # status() reads more than the position: not every turn
                self._refuse_if_stalled()
                next_check = now + STATUS_EVERY
            if now >= deadline:
                raise ApiProblem(
                    503,
                    "view-lagging",
                    f"the {self.runner.name} view did not reach position {position} "
                    f"within {self.timeout:g}s",
                    headers={"Retry-After": "1"},
                )
            if not self.drive or not self._step():
                time.sleep(POLL_SECONDS)

    def _refuse_if_stalled(self) -> None:
        status = self.runner.status()
        if status.state == "stalled":
            raise ProjectionStalled(
                f"{status.name} stalled at {status.error_position}: {status.error}"
            )

    def _step(self) -> bool:
        """Apply one batch if no other request is doing so; True when anything was applied."""
        if not self._driving.acquire(blocking=False):
            return False
        try:
            return self.runner.run_once() > 0
        finally:
            self._driving.release()
