"""The all-in-one Janus process for the embedded default and edge nodes.

One thread per duty: keep the views current, run granted effects, record expiries, keep time for
jobs. The executor and the scheduler only work while holding their leader lock, so starting two
processes on one store is safe: the second waits and takes over when the first dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bootstrap.container import Janus
from commands.scheduler import Scheduler
from projections.runner import ProjectionStalled

log = logging.getLogger(__name__)


class JanusProcess:
    def __init__(self, janus: Janus, poll_interval: float | None = None) -> None:
        self.janus = janus
        self.poll = poll_interval or janus.settings.poll_interval_seconds
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler: Scheduler | None = None

    def start(self) -> None:
        self.janus.relational.catch_up(timeout=600)
        self.janus.expiry().sweep()
        for name, target in (
            ("projections", self._project),
            ("executor", self._execute),
            ("expiry", self._expire),
            ("scheduler", self._schedule),
            *((("agent", self._agent),) if self.janus.settings.agent_enabled else ()),
        ):
            thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.ready.set()

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """A duty that fails is logged and restarted after a pause, never silently lost."""

        def run() -> None:
            while not self.stop_event.is_set():
                try:
                    target()
                except ProjectionStalled as error:
                    log.error("%s: %s", name, error)
                except Exception:
                    log.exception("%s failed; restarting it", name)
                self.stop_event.wait(self.poll * 4)

        return run

    def _project(self) -> None:
        self.janus.relational.run_forever(self.stop_event, self.poll)

    def _execute(self) -> None:
        lock = self.janus.leader_lock("executor")
        if not lock.acquire(timeout=float("inf"), stop=self.stop_event):
            return
        executor = self.janus.executor()
        while not self.stop_event.is_set():
            # A lost database session drops the advisory lock: stop before a second executor
            # could recover the same effect; the guard re-acquires the lock.
            if not lock.held:
                log.warning("executor lost its leader lock; re-acquiring")
                lock.release()
                return
            if executor.run_once() == 0:
                self.stop_event.wait(self.poll)

    def _expire(self) -> None:
        sweeper = self.janus.expiry()
        while not self.stop_event.wait(self.poll):
            sweeper.sweep()

    def _schedule(self) -> None:
        lock = self.janus.leader_lock("scheduler")
        if not lock.acquire(timeout=float("inf"), stop=self.stop_event):
            return
        self.janus.relational.catch_up(timeout=600)
        scheduler = self.janus.scheduler()
        self._scheduler = scheduler
        scheduler.start()
        try:
            while not self.stop_event.wait(self.poll):
                if not lock.held:
                    log.warning("scheduler lost its leader lock; re-acquiring")
                    lock.release()
                    return
                scheduler.sync()
        finally:
            scheduler.stop()

    def _agent(self) -> None:
        from bootstrap.agent import run_agent

        run_agent(self.janus, self.stop_event, self.poll)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self.janus.close()

    def run_until_stopped(self) -> None:
        self.start()
        self.stop_event.wait()
