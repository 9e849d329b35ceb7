"""The event store opened for reading the history (audit, time travel, export/import, re-runs)."""

from __future__ import annotations

from eventsourcing.persistence import PersistenceError

from bootstrap.container import build_views_engine, eventsourcing_env
from bootstrap.settings import Settings
from commands.errors import StoreUnavailable
from event_store.application import JanusApplication
from event_store.events_table import EventTable, UnsupportedStore
from event_store.reader import NotificationReader
from replay.store import Store

__all__ = ["open_store"]


def open_store(settings: Settings, use_views: bool = True) -> Store:
    """The store with small pools (one command line call); the views as an index if wanted."""
    if settings.embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
    try:
        app = JanusApplication(eventsourcing_env(settings, small=True), name=settings.app_name)
    except PersistenceError as error:
        raise StoreUnavailable(
            f"event store unreachable at {settings.redacted_database_url()}: {error}"
        ) from error
    try:
        table = EventTable(app)
    except UnsupportedStore as error:
        app.close()
        raise StoreUnavailable(str(error)) from error
    store = Store(settings, app, NotificationReader(app), table, None)
    if not use_views:
        return store
    if settings.embedded and not (settings.home / "views.sqlite").exists():
        store.notes.append("no views yet: scanning the log")
        return store
    store.attach_views(build_views_engine(settings, small=True))
    return store
