"""JetStream projection workloads, a relay that publishes on demand, and view comparisons."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from event_store.messages import headers_for, subject_for
from projections.relational import RelationalProjection
from projections.relational import tables as relational
from projections.runner import ProjectionRunner
from tests.servers import unique_name
from tests.support.commands import AGENT, as_alice

TEST_STREAM_BYTES = 64 * 1024**2


class Relay:
    """Publishes the log to the stream the way the relay does: in log order, one message each."""

    def __init__(self, janus: Janus, nats_url: str | None = None) -> None:
        self.janus = janus
        self.settings = janus.settings
        self.nats_url = nats_url or janus.settings.nats_url
        self.position = 0

    def publish(self) -> int:
        """Everything in the log not yet published; returns the position published up to."""
        return asyncio.run(self._publish_new())

    def republish(self, after: int = 0) -> None:
        """The same events again under fresh message ids, so the stream holds duplicates."""
        asyncio.run(self._publish_range(after, nonce="again"))

    def publish_raw(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        """Something in the stream that did not come from the relay; returns its sequence."""
        return asyncio.run(self._publish_raw(body, headers))

    async def _publish_new(self) -> int:
        self.position = await self._publish_range(self.position)
        return self.position

    async def _publish_range(self, after: int, nonce: str = "") -> int:
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(self.settings.stream_spec().config())
            position = after
            while page := self.janus.reader.read_after(position, 500):
                for n in page:
                    headers = headers_for(n, self.settings.node_id, self.settings.app_name)
                    if nonce:
                        headers["Nats-Msg-Id"] = f"{nonce}:{n.id}"
                    subject = subject_for(self.settings.subject_prefix, n.topic)
                    await js.publish(subject, n.state, headers=headers)
                position = page[-1].id
            return position
        finally:
            await nc.close()

    async def _publish_raw(self, body: bytes, headers: dict[str, str] | None) -> int:
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(self.settings.stream_spec().config())
            ack = await js.publish(f"{self.settings.subject_prefix}.Junk", body, headers=headers)
            return ack.seq
        finally:
            await nc.close()

    def consumer_info(self, name: str) -> ConsumerInfo:
        return asyncio.run(self._jsm(lambda js: js.consumer_info(self.settings.stream_name, name)))

    def delete_message(self, seq: int) -> None:
        asyncio.run(self._jsm(lambda js: js.delete_msg(self.settings.stream_name, seq)))

    def pause_consumer(self, name: str, seconds: float) -> None:
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
        stream = self.settings.stream_name
        asyncio.run(self._jsm(lambda js: js.pause_consumer(stream, name, until)))

    def delete_consumer(self, name: str) -> None:
        asyncio.run(self._jsm(lambda js: js.delete_consumer(self.settings.stream_name, name)))

    async def _jsm(self, call: Callable[[Any], Any]) -> Any:
        nc = await nats.connect(self.nats_url)
        try:
            return await call(nc.jetstream())
        finally:
            await nc.close()


def workload(janus: Janus, goals: int) -> int:
    """Goals, decisions, confirmations and grants: later events update rows earlier ones made,
    so applying out of order or twice shows up as a different row or a stall."""
    position = 0
    for i in range(goals):
        goal = janus.commands.submit_goal(m.SubmitGoal(text=f"goal {i}"), as_alice())
        position = goal.position
        if i % 3:
            continue
        action = m.Action(name="unlock_door", parameters={"door": str(i)})
        decision = janus.commands.record_decision(
            m.RecordDecision(
                goal_id=goal.aggregate_id, model="m", prompt="p", raw_output="{}", action=action
            ),
            AGENT,
        )
        requested = janus.commands.request_confirmation(
            m.RequestConfirmation(
                goal_id=goal.aggregate_id,
                decision_id=decision.aggregate_id,
                action=action,
                hazard="high",
            ),
            AGENT,
        )
        cmd = m.GrantConfirmation(confirmation_id=requested.aggregate_id)
        position = janus.commands.grant_confirmation(cmd, as_alice()).position
    return position


def plain_rows(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def view_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in relational.metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(plain_rows(v) for v in row) for row in conn.execute(query)]
    return rows


def rebuilt_rows(janus: Janus, directory: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The relational views built afresh from the log, in a database of their own."""
    engine = create_engine(f"sqlite:///{directory / unique_name('rebuild')}.sqlite")
    try:
        runner = ProjectionRunner(RelationalProjection(), janus.reader, engine)
        runner.setup()
        runner.catch_up()
        return view_rows(engine)
    finally:
        engine.dispose()


def jetstream_settings(home: Path, pg_url: str, nats_url: str) -> Settings:
    return Settings(
        home=home,
        database_url=pg_url,
        nats_url=nats_url,
        stream_name=unique_name("janus_t"),
        subject_prefix=unique_name("janus_t"),
        # A shared server reserves max_bytes per stream: ask only for what a test needs.
        stream_max_bytes=TEST_STREAM_BYTES,
        poll_interval_seconds=0.05,
    )


def delete_stream(settings: Settings) -> None:
    """Give a shared server its storage back; names are unique, so this is hygiene only."""

    async def delete() -> None:
        nc = await nats.connect(settings.nats_url)
        try:
            await nc.jetstream().delete_stream(settings.stream_name)
        except NotFoundError:
            pass  # the test never got as far as publishing
        finally:
            await nc.close()

    asyncio.run(delete())
