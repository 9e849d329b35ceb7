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
from bootstrap.knowledge import KnowledgeParts, knowledge_runners
from bootstrap.settings import Settings
from commands.errors import StoreUnavailable
from commands.executor import Executor
from commands.expiry import ExpirySweeper
from commands.runner import CommandRunner
from commands.scheduler import Scheduler
from commands.service import CommandService
from event_store.application import JanusApplication
from event_store.faults import describe
from event_store.reader import NotificationReader
from projections.knowledge import KnowledgeRunner
from projections.queries import Views
from projections.registry import FeedSource, Projections, Runner
from projections.relational import RelationalProjection
from projections.runner import ProjectionRunner

# A CLI call does one thing at a time: one connection for the events, one for the views (a
# second views connection only if a read overlaps a write). Long-running roles (API, runtime,
# relay, projectors) use JANUS_POOL_SIZE. Eight CLI calls at once used to open ~80 connections.
CLI_POOL_SIZE = 1
CLI_VIEWS_OVERFLOW = 1


def build_views_engine(settings: Settings, *, small: bool = False) -> Engine:
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.views_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")

        return engine
    sizes = {"pool_size": CLI_POOL_SIZE, "max_overflow": CLI_VIEWS_OVERFLOW} if small else {}
    engine = create_engine(
        settings.views_url,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": settings.connect_timeout_seconds,
            # Migrations and view writes wait for a stuck session no longer than appends do.
            "options": f"-c lock_timeout={settings.lock_timeout_seconds * 1000}",
        },
        **sizes,
    )

    @event.listens_for(engine, "handle_error")
    def _drop_read_only_sessions(context):  # type: ignore[no-untyped-def]
        # A session opened while the database was read-only stays so after it is switched
        # back: treat it as a lost connection, so the pool replaces its sessions.
        if isinstance(context.original_exception, psycopg.errors.ReadOnlySqlTransaction):
            context.is_disconnect = True

    return engine


def eventsourcing_env(settings: Settings, *, small: bool = False) -> dict[str, str]:
    env = settings.eventsourcing_env()
    if small and not settings.embedded:
        env["POSTGRES_POOL_SIZE"] = str(CLI_POOL_SIZE)
        # psycopg's pool opens a spare connection whenever its last one is taken, up to its
        # maximum: no overflow, or every call would open two.
        env["POSTGRES_MAX_OVERFLOW"] = "0"
    return env


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
    knowledge: KnowledgeParts
    knowledge_views: dict[str, KnowledgeRunner]
    _locks: list[LeaderLock] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings | None = None,
        clock: Clock | None = None,
        effects: EffectRegistry | None = None,
        *,
        small_pools: bool = False,
    ) -> Janus:
        """``small_pools``: for one short command (the CLI), one or two connections per pool."""
        settings = settings or Settings()
        if settings.embedded:
            settings.home.mkdir(parents=True, exist_ok=True)
        try:
            env = eventsourcing_env(settings, small=small_pools)
            app = JanusApplication(env, name=settings.app_name)
            engine = build_views_engine(settings, small=small_pools)
            reader = NotificationReader(app)
            relational = ProjectionRunner(RelationalProjection(), reader, engine)
            relational.setup()
        except (PersistenceError, SQLAlchemyError) as error:
            raise StoreUnavailable(
                f"event store at {settings.redacted_database_url()}: {describe(error)}"
            ) from error
        clock = clock or SystemClock()
        runner = CommandRunner(app, settings.node_id)
        effects = effects or build_effects(settings)
        commands = CommandService(
            runner, clock, settings.confirmation_ttl_seconds, effects.catalogue
        )
        # Opened on first use only: a CLI call that never touches them takes no embedded lock.
        knowledge = KnowledgeParts(settings)
        return cls(
            settings=settings,
            app=app,
            reader=reader,
            commands=commands,
            views_engine=engine,
            views=Views(engine),
            relational=relational,
            effects=effects,
            clock=clock,
            knowledge=knowledge,
            knowledge_views=knowledge_runners(knowledge, reader, engine),
        )

    @classmethod
    def for_cli(cls, settings: Settings | None = None) -> Janus:
        """A Janus for one command line call: small pools (see CLI_POOL_SIZE)."""
        return cls.build(settings, small_pools=True)

    @property
    def projections(self) -> Projections:
        """Every projection this node can run, by name: the one registry."""
        runners: dict[str, Runner] = {self.relational.name: self.relational}
        runners.update(self.knowledge_views)
        return Projections(runners, self.leader_lock)

    def feed_source(self) -> FeedSource:
        """Where this node's projectors read events from (JetStream when NATS is configured)."""
        settings = self.settings
        return FeedSource(settings.nats_url, settings.stream_spec(), settings.poll_interval_seconds)

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
        return Scheduler(
            self.app,
            self.views,
            self.effects,
            self.settings.node_id,
            self.clock,
            confirmation_ttl_seconds=self.settings.confirmation_ttl_seconds,
        )

    def close(self) -> None:
        for lock in self._locks:
            lock.release()
        for view in self.knowledge_views.values():
            view.close()
        self.knowledge.close()
        self.views_engine.dispose()
        self.app.close()
