"""The composition root: builds every part of Janus from settings. Nothing connects on import."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from eventsourcing.persistence import PersistenceError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapters.clock import Clock, SystemClock
from adapters.effects import EffectRegistry, Ledger, SimulatedDoorLock, SimulatedNotifier
from adapters.locks import FileLeaderLock, LeaderLock, PostgresLeaderLock
from bootstrap.settings import Settings
from commands.errors import StoreUnavailable
from commands.executor import Executor
from commands.expiry import ExpirySweeper
from commands.runner import CommandRunner
from commands.scheduler import Scheduler
from commands.service import CommandService
from event_store.application import JanusApplication
from event_store.reader import NotificationReader
from projections.queries import Views
from projections.relational import RelationalProjection
from projections.runner import ProjectionRunner


def build_views_engine(settings: Settings) -> Engine:
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.views_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")

        return engine
    engine = create_engine(
        settings.views_url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": settings.connect_timeout_seconds},
    )

    @event.listens_for(engine, "handle_error")
    def _drop_read_only_sessions(context):  # type: ignore[no-untyped-def]
        # A session opened while the database was read-only stays so after it is switched
        # back: treat it as a lost connection, so the pool replaces its sessions.
        if isinstance(context.original_exception, psycopg.errors.ReadOnlySqlTransaction):
            context.is_disconnect = True

    return engine


def world_dir(settings: Settings) -> Path:
    """Where the simulated devices keep their own ledgers (they stand for the outside world)."""
    return settings.home / "world"


def build_effects(settings: Settings) -> EffectRegistry:
    world = world_dir(settings)
    return EffectRegistry(
        [
            SimulatedDoorLock(Ledger(world / "door_lock.sqlite")),
            SimulatedNotifier(Ledger(world / "notifier.sqlite")),
        ]
    )


@dataclass
class Janus:
    settings: Settings
    app: JanusApplication
    reader: NotificationReader
    commands: CommandService
    views_engine: Engine
    views: Views
    relational: ProjectionRunner
    effects: EffectRegistry
    clock: Clock
    _locks: list[LeaderLock] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings | None = None,
        clock: Clock | None = None,
        effects: EffectRegistry | None = None,
    ) -> Janus:
        settings = settings or Settings()
        if settings.embedded:
            settings.home.mkdir(parents=True, exist_ok=True)
        try:
            app = JanusApplication(settings.eventsourcing_env(), name=settings.app_name)
            engine = build_views_engine(settings)
            reader = NotificationReader(app)
            relational = ProjectionRunner(RelationalProjection(), reader, engine)
            relational.setup()
        except (PersistenceError, SQLAlchemyError) as error:
            raise StoreUnavailable(
                f"event store unreachable at {settings.redacted_database_url()}: {error}"
            ) from error
        clock = clock or SystemClock()
        runner = CommandRunner(app, settings.node_id)
        return cls(
            settings=settings,
            app=app,
            reader=reader,
            commands=CommandService(runner, clock, settings.confirmation_ttl_seconds),
            views_engine=engine,
            views=Views(engine),
            relational=relational,
            effects=effects or build_effects(settings),
            clock=clock,
        )

    def leader_lock(self, role: str) -> LeaderLock:
        if self.settings.database_url is None:
            lock: LeaderLock = FileLeaderLock(
                self.settings.home / f"{role}.lock", self.settings.leader_grace_seconds
            )
        else:
            lock = PostgresLeaderLock(
                self.settings.database_url.replace("postgresql+psycopg", "postgresql"),
                f"{self.settings.app_name}:{role}",
                self.settings.connect_timeout_seconds,
                self.settings.leader_grace_seconds,
            )
        self._locks.append(lock)
        return lock

    def executor(self, lease: LeaderLock | None = None) -> Executor:
        """``lease``: the executor's leader lock (fencing); None only where nothing else runs."""
        return Executor(self.app, self.effects, self.settings.node_id, lease=lease)

    def expiry(self) -> ExpirySweeper:
        return ExpirySweeper(self.commands, self.views.confirmations_due, self.clock)

    def scheduler(self) -> Scheduler:
        return Scheduler(self.app, self.views, self.effects, self.settings.node_id, self.clock)

    def close(self) -> None:
        for lock in self._locks:
            lock.release()
        self.views_engine.dispose()
        self.app.close()
