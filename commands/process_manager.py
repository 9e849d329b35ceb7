"""A process manager's loop: follow the log from a tracked position, one batch at a time.

The agent (``commands/agent.py``) and entity extraction (``commands/extraction.py``) are process
managers: each reads the next batch of notifications after its own tracked position, handles it,
and only then moves its position past the batch, so a crash or an error anywhere reads the same
batch again (what each one records is keyed, so doing it again records nothing twice). A model
that cannot run (``ModelUnavailable``) leaves the position where it is and shows in the status as
``waiting: <why>`` until a batch goes through.

One process manager per log works at a time: ``run_while_leader`` drives one while holding its
leader lock, waits as a standby until it gets the lock, and steps down when it loses it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from eventsourcing.persistence import Notification, Tracking

from adapters.llm import ModelUnavailable
from adapters.locks import LeaderLock
from event_store.application import JanusApplication
from event_store.reader import NotificationReader

__all__ = ["ProcessManager", "run_while_leader"]

log = logging.getLogger(__name__)


class RunsModel(Protocol):
    """What the loop asks of a process manager's model: its name and whether it can run."""

    @property
    def name(self) -> str: ...

    def check(self) -> None: ...


ModelT = TypeVar("ModelT", bound=RunsModel)


class ProcessManager(ABC, Generic[ModelT]):
    name: ClassVar[str]  # its tracked position's name and its leader lock's role
    kept: ClassVar[str]  # what waits while the model cannot run, as the log says it

    def __init__(self, app: JanusApplication, model: ModelT, batch_size: int) -> None:
        self.app = app
        self.reader = NotificationReader(app)
        self.model = model
        self.batch_size = batch_size
        self.problem: str | None = None
        self._status_lock = threading.Lock()

    @property
    def position(self) -> int:
        return self.app.tracked_position(self.name)

    def status(self) -> dict[str, Any]:
        """What the status commands and the readiness checks show."""
        with self._status_lock:
            problem = self.problem
        head = self.app.head()
        position = self.position
        return {
            "model": self.model.name,
            "state": "waiting: " + problem if problem else "running",
            "position": position,
            "head": head,
            "lag": max(head - position, 0),
        }

    def _set_problem(self, problem: str | None) -> None:
        with self._status_lock:
            self.problem = problem

    def run_once(self) -> int:
        """Handle the next batch; returns how many notifications it read.

        Raises ModelUnavailable (position unchanged) when the model cannot run, and any other
        error the batch met (position unchanged too): the same batch is read again next call.
        """
        batch = self.reader.read_after(self.position, self.batch_size)
        try:
            self.handle(batch)
        except ModelUnavailable as error:
            self._set_problem(str(error))
            raise
        self._set_problem(None)
        if batch:
            self.app.save_tracked(tracking=Tracking(self.name, batch[-1].id))
        return len(batch)

    @abstractmethod
    def handle(self, batch: list[Notification]) -> None:
        """Act on every notification of the batch that concerns this manager, or raise."""

    def close(self) -> None:
        """Let go of what the manager holds (threads, models); it reads nothing after."""
        return None


def run_while_leader(
    lock: LeaderLock,
    build: Callable[[], ProcessManager[Any]],
    stop: threading.Event,
    poll: float,
) -> None:
    """Run the manager ``build`` makes while holding ``lock``; a second process waits as standby.

    The manager is built only once the lock is held. A lost lock ends the run (the caller may
    start again and wait for the lock); a model that cannot run is logged once per reason and
    waited out, its work kept in the log.
    """
    if not lock.acquire(timeout=float("inf"), stop=stop):
        return
    manager = build()
    reported: str | None = None
    try:
        while not stop.is_set():
            if not lock.held:
                log.warning("%s lost its leader lock; re-acquiring", manager.name)
                lock.release()
                return
            try:
                read = manager.run_once()
            except ModelUnavailable as error:
                if str(error) != reported:
                    log.error("%s waiting, %s are kept: %s", manager.name, manager.kept, error)
                    reported = str(error)
                stop.wait(max(poll * 10, 5.0))
                continue
            reported = None
            if read == 0:
                stop.wait(poll)
    finally:
        manager.close()
        lock.release()
