"""Waking the relay: Postgres LISTEN/NOTIFY on the recorder's channel, and waiting on events.

A wake-up is only a hint: the relay also polls, because a NOTIFY can be lost (the listening
connection drops), and SQLite has no NOTIFY at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from event_store.application import JanusApplication
from event_store.relay.status import Outages


def notify_channel(app: JanusApplication) -> str | None:
    recorder = app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        return recorder.channel_name
    return None  # SQLite has no NOTIFY: polling alone


async def listen(
    conninfo: str,
    channel: str,
    wake: asyncio.Event,
    outages: Outages,
    *,
    connect_timeout: int,
    max_backoff: float,
) -> None:
    """Set ``wake`` on each NOTIFY; reconnect with backoff, never give up."""
    backoff = 0.1
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                connect_timeout=connect_timeout,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=3,
                keepalives_count=3,
            ) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                outages.end("notifications")
                wake.set()  # whatever was appended while we were not listening
                backoff = 0.1
                async for _ in conn.notifies():
                    wake.set()
        except psycopg.Error as error:
            outages.begin("notifications", error)
        await asyncio.sleep(backoff)
        backoff = min(max_backoff, backoff * 2)


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of ``events`` is set or ``timeout`` passes."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` comes first (then cancel it); True when it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True
