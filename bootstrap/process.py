"""The all-in-one Janus process for the embedded default and edge nodes.

One thread per duty: keep the views current, run granted effects, record expiries, keep time for
jobs. The executor and the scheduler only work while holding their leader lock, so starting two
processes on one store is safe: the second waits and takes over when the first dies.

A leader duty that fails (a lost lock session, a read-only or unreachable database, a conflict
after a takeover) steps down before anything else: it stops acting, records that its term is
over and releases its lock, so this process or another can take the role again. Each duty keeps
one lock object for its whole life, so a retry can never leave an older session holding the lock
for nobody. Every duty's state is written to the role board with a heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from adapters.locks import LeaderLock, LeadershipLost
from adapters.role_status import RoleBoard, RoleState
from bootstrap.agent import run_agent
from bootstrap.container import Janus
from bootstrap.extraction import run_extraction
from commands.scheduler import Scheduler
from projections.registry import TargetUnavailable
from projections.runner import ProjectionStalled

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 5.0
HEARTBEAT_SECONDS = 5.0


class JanusProcess:
    def __init__(
        self,
        janus: Janus,
        poll_interval: float | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.janus = janus
        self.poll = poll_interval or janus.settings.poll_interval_seconds
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler: Scheduler | None = None
        self._locks: dict[str, LeaderLock] = {}
        # The pid names the process; the suffix tells apart two runtimes in one process.
        instance = f"{janus.settings.node_id}:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.board = RoleBoard(janus.views_engine, instance, heartbeat_seconds)
        self.roles: dict[str, RoleState] = {}
        self._roles_changed = threading.Event()
        self._roles_mutex = threading.Lock()

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler this process runs while it holds the scheduler's lock, else None."""
        return self._scheduler

    def start(self) -> None:
        self.janus.relational.catch_up(timeout=600)
        self.janus.expiry().sweep()
        duties = (
            ("projections", self._project),
            ("executor", self._execute),
            ("expiry", self._expire),
            ("scheduler", self._schedule),
            *((("agent", self._agent),) if self.janus.settings.agent_enabled else ()),
            *((("extraction", self._extract),) if self.janus.settings.extraction_enabled else ()),
            *((f"projections:{name}", self._knowledge(name)) for name in self._knowledge_views()),
        )
        for name, target in duties:
            thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        heartbeat = threading.Thread(target=self._heartbeat, name="role-heartbeat", daemon=True)
        heartbeat.start()
        self._threads.append(heartbeat)
        self.ready.set()

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """A duty that fails is logged and restarted after a pause, never silently lost.

        The pause grows while it keeps failing (up to MAX_RETRY_SECONDS), and only the first
        failure in a row logs a traceback.
        """

        def run() -> None:
            failures = 0
            while not self.stop_event.is_set():
                delay = self.poll * 4
                try:
                    target()
                    failures = 0
                except LeadershipLost as lost:
                    log.warning("%s: %s; queueing for the lock again", name, lost)
                    self._set(name, "standby", str(lost))
                    delay = self.poll
                except ProjectionStalled as error:
                    log.error("%s: %s", name, error)
                    self._set(name, "failing", str(error))
                except Exception as error:
                    failures += 1
                    if failures == 1:
                        log.exception("%s failed; restarting it", name)
                    else:
                        log.warning("%s failed again (%s in a row): %r", name, failures, error)
                    self._set(name, "failing", _describe(error))
                    delay = min(MAX_RETRY_SECONDS, self.poll * 4 * 2 ** (failures - 1))
                self.stop_event.wait(delay)
            self._set(name, "stopped")

        return run

    def _lock(self, role: str) -> LeaderLock:
        lock = self._locks.get(role)
        if lock is None:
            lock = self._locks[role] = self.janus.leader_lock(role)
        return lock

    def _project(self) -> None:
        self._set("projections", "running")
        self.janus.relational.run_forever(self.stop_event, self.poll)

    def _knowledge_views(self) -> list[str]:
        wanted = self.janus.settings.runtime_views.split(",")
        return [name for name in self.janus.knowledge_views if name in wanted]

    def _knowledge(self, name: str) -> Callable[[], None]:
        """Keep a knowledge view current. Its target held by another process (an embedded
        Qdrant folder opened by `janus project vector`) is a standby, not a failure."""
        role = f"projections:{name}"
        view = self.janus.knowledge_views[name]

        def run() -> None:
            view.setup()
            try:
                view.view()  # opens the target: raises here while another process holds it
                self._set(role, "running")
                view.run_forever(self.stop_event, self.poll)
            except TargetUnavailable as unavailable:
                self._set(role, "standby", str(unavailable)[:200])
                self.stop_event.wait(MAX_RETRY_SECONDS)

        return run

    def _execute(self) -> None:
        lock = self._lock("executor")
        self._set("executor", "standby")
        if not lock.acquire(timeout=float("inf"), stop=self.stop_event):
            return
        try:
            executor = self.janus.executor(lease=lock)
            self._set("executor", "running", f"term {lock.term}")
            while not self.stop_event.is_set():
                # The executor proves its lease before every batch and every device call and
                # raises LeadershipLost the moment it is gone.
                if executor.run_once() == 0:
                    self.stop_event.wait(self.poll)
        finally:
            lock.step_down()  # nothing runs under this term any more: say so, then let go

    def _expire(self) -> None:
        sweeper = self.janus.expiry()
        self._set("expiry", "running")
        while not self.stop_event.wait(self.poll):
            sweeper.sweep()

    def _schedule(self) -> None:
        lock = self._lock("scheduler")
        self._set("scheduler", "standby")
        if not lock.acquire(timeout=float("inf"), stop=self.stop_event):
            return
        try:
            self.janus.relational.catch_up(timeout=600)
            scheduler = self.janus.scheduler()
            self._scheduler = scheduler
            scheduler.start()
            try:
                self._set("scheduler", "running", f"term {lock.term}")
                while not self.stop_event.wait(self.poll):
                    if not lock.held:
                        raise LeadershipLost("the scheduler's lock session ended")
                    scheduler.sync()
            finally:
                scheduler.stop()  # waits for fires under way
                self._scheduler = None
        finally:
            lock.step_down()

    # -- role status -------------------------------------------------------------------------------

    def _set(self, role: str, state: str, detail: str | None = None) -> None:
        with self._roles_mutex:
            current = self.roles.get(role)
            if current is not None and (current.state, current.detail) == (state, detail):
                return
            since = current.since if current and current.state == state else datetime.now(UTC)
            self.roles[role] = RoleState(state, detail, since)
        self._roles_changed.set()

    def _heartbeat(self) -> None:
        """Write every role's state on each change and every heartbeat, until stopped."""
        failing = False
        while True:
            stopping = self.stop_event.is_set()
            self._roles_changed.clear()
            with self._roles_mutex:
                states = dict(self.roles)
            try:
                self.board.write(states)
                failing = False
            except SQLAlchemyError as error:
                if not failing:
                    log.warning("role status not written: %s", _describe(error))
                failing = True
            if stopping:
                return
            self._roles_changed.wait(self.board.heartbeat_seconds)

    def _agent(self) -> None:
        run_agent(self.janus, self.stop_event, self.poll)

    def _extract(self) -> None:
        self._set("extraction", "running")
        run_extraction(self.janus, self.stop_event, self.poll)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self._roles_changed.set()
        for thread in self._threads:
            thread.join(timeout)
        with self._roles_mutex:
            self.roles = {r: RoleState("stopped", None, datetime.now(UTC)) for r in self.roles}
        try:
            self.board.write(self.roles)
        except SQLAlchemyError as error:
            log.warning("role status not written on stop: %s", _describe(error))
        self.janus.close()

    def run_until_stopped(self) -> None:
        self.start()
        self.stop_event.wait()


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    # One line, bounded: the status is shown on /readyz, which anyone may read.
    return (f"{type(error).__name__}: {text[0]}" if text else type(error).__name__)[:200]
