"""The relay against real Postgres (and SQLite) and a real NATS JetStream server.

Every test gets its own stream and subject prefix, so they share the session's NATS server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import psycopg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig

from bootstrap.container import Janus
from bootstrap.relay import build_relay
from bootstrap.relay import relay_status as read_relay_status
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from event_store import messages as wire
from event_store.relay.status import RelayStatus
from event_store.relay.thread import RelayThread
from event_store.relay.window import H_EXPECTED_LAST_MSG_ID, H_EXPECTED_LAST_SEQUENCE
from tests.servers import NatsServer, wait_until
from tests.support.relay import (
    OPERATOR,
    TEST_OPTIONS,
    TRACEPARENT,
    JanusFactory,
    Writer,
    assert_stream_is_the_log,
    log_event_ids,
    relay_settings,
    running_relay,
    stream_contents,
    submit_goals,
    wait_caught_up,
)


@pytest.fixture(params=["postgres", "sqlite"])
def any_store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


# -- helpers ------------------------------------------------------------------------------------


def varied_events(janus: Janus) -> None:
    """Events of several aggregate types (so several subjects), with and without a trace."""
    goal = janus.commands.submit_goal(m.SubmitGoal(text="water the plants"), OPERATOR)
    janus.commands.record_plan(
        m.RecordPlan(goal_id=goal.aggregate_id, steps=["fill the can", "pour"]), OPERATOR
    )
    job = m.ScheduleJob.model_validate(
        {
            "name": "nightly",
            "trigger": {"kind": "interval", "seconds": 60},
            # The gate checks the action when the job is scheduled: one the catalogue knows.
            "action": {"name": "notify", "parameters": {"to": "ops"}},
        }
    )
    janus.commands.schedule_job(job, Invocation(Actor(ActorKind.SCHEDULER, "cron")))
    submit_goals(janus, 5)


def healthy(status: RelayStatus) -> bool:
    return status.connected and status.last_error is None


# -- the stories -----------------------------------------------------------------------------------


def test_every_event_is_published_once_in_log_order_with_the_contract_headers(
    tmp_path: Path, any_store: str | None, nats_url: str, janus_on: JanusFactory
) -> None:
    janus = janus_on(relay_settings(tmp_path / "janus", nats_url, any_store))
    varied_events(janus)
    with running_relay(janus):
        wait_caught_up(janus)
        varied_events(janus)  # and what is appended while it runs
        wait_caught_up(janus)

    published = assert_stream_is_the_log(janus)
    assert {p.headers.get(wire.H_TRACEPARENT) for p in published} == {TRACEPARENT, None}
    # The ordering guard: the server stores each event only right after its predecessor.
    assert published[0].headers[H_EXPECTED_LAST_SEQUENCE] == "0"
    for before, after in itertools.pairwise(published):
        assert after.headers[H_EXPECTED_LAST_MSG_ID] == before.headers[wire.H_MSG_ID]
    stored = {n.id: n for n in janus.reader.read_after(0, 1000)}
    prefix = janus.settings.subject_prefix
    assert {p.subject for p in published} == {f"{prefix}.Goal", f"{prefix}.Job"}
    for message in published:
        notification = stored[message.position]
        logged = janus.reader.decode(notification)
        assert message.data == notification.state
        assert message.subject == wire.subject_for(prefix, notification.topic)
        meta = logged.event.meta
        expected = wire.headers_for(
            notification,
            janus.settings.node_id,
            janus.settings.app_name,
            meta.correlation_id,
            meta.trace_context.get("traceparent", ""),
        )
        assert expected.items() <= message.headers.items()
        # One event, one message id wherever it travels: its own event id.
        assert message.headers[wire.H_MSG_ID] == str(meta.event_id)
        assert message.headers[wire.H_LOG] == f"{janus.settings.node_id}:janus"
        assert wire.notification_from_message(message.headers, message.data) == notification


def test_a_notify_wakes_the_relay_long_before_its_poll_interval(
    tmp_path: Path, pg_url: str, nats_url: str, janus_on: JanusFactory
) -> None:
    settings = relay_settings(tmp_path / "janus", nats_url, pg_url)
    janus = janus_on(settings.model_copy(update={"poll_interval_seconds": 60.0}))
    with running_relay(janus):
        wait_until(lambda: read_relay_status(janus).state == "running", 10)
        submit_goals(janus, 3)
        wait_caught_up(janus, timeout=10)
    assert len(assert_stream_is_the_log(janus)) == 3


def test_a_restarted_relay_resumes_from_its_saved_position(pg_janus: Janus) -> None:
    submit_goals(pg_janus, 30)
    with running_relay(pg_janus):
        wait_caught_up(pg_janus)
    assert read_relay_status(pg_janus).position == pg_janus.app.head()

    submit_goals(pg_janus, 20, "after restart")
    with running_relay(pg_janus) as second:
        wait_caught_up(pg_janus)
        assert second.relay.published == 20
    assert_stream_is_the_log(pg_janus)


def test_events_published_before_a_crash_are_not_published_twice(pg_janus: Janus) -> None:
    """A relay crashed after its publishes were acked but before it saved the position."""
    submit_goals(pg_janus, 40)
    asyncio.run(publish_like_a_crashed_relay(pg_janus, pg_janus.reader.read_after(0, 25)))
    assert read_relay_status(pg_janus).position == 0

    with running_relay(pg_janus) as relay:
        wait_caught_up(pg_janus)
        assert relay.relay.published == 15
    assert_stream_is_the_log(pg_janus)


def test_an_existing_stream_is_updated_to_the_spec_in_place(pg_janus: Janus) -> None:
    submit_goals(pg_janus, 6)
    spec = pg_janus.settings.stream_spec()
    asyncio.run(create_stream(pg_janus, max_age=3600.0, duplicate_window=60.0))
    asyncio.run(publish_like_a_crashed_relay(pg_janus, pg_janus.reader.read_after(0, 2)))

    with running_relay(pg_janus):
        wait_caught_up(pg_janus)

    config = asyncio.run(stream_config(pg_janus))
    assert (config.max_age, config.duplicate_window) == (
        float(spec.max_age_seconds),
        float(spec.duplicate_window_seconds),
    )
    assert len(assert_stream_is_the_log(pg_janus)) == 6  # the first two kept, not re-created


async def create_stream(janus: Janus, **changes: Any) -> None:
    assert janus.settings.nats_url is not None
    nc = await nats.connect(janus.settings.nats_url)
    try:
        config = janus.settings.stream_spec().config()
        await nc.jetstream().add_stream(config.evolve(**changes))
    finally:
        await nc.close()


async def stream_config(janus: Janus) -> StreamConfig:
    assert janus.settings.nats_url is not None
    nc = await nats.connect(janus.settings.nats_url)
    try:
        return (await nc.jetstream().stream_info(janus.settings.stream_name)).config
    finally:
        await nc.close()


def test_jetstream_drops_an_event_published_again_by_its_message_id(pg_janus: Janus) -> None:
    submit_goals(pg_janus, 10)
    with running_relay(pg_janus):
        wait_caught_up(pg_janus)
    again = pg_janus.reader.read_after(0, 10)[3:6]

    acks = asyncio.run(publish_like_a_crashed_relay(pg_janus, again))

    assert [ack.duplicate for ack in acks] == [True, True, True]
    assert [ack.seq for ack in acks] == [4, 5, 6]
    assert len(assert_stream_is_the_log(pg_janus)) == 10


def test_a_stream_ending_with_another_logs_event_is_refused_not_appended_to(
    pg_janus: Janus,
) -> None:
    submit_goals(pg_janus, 4)
    first = pg_janus.reader.read_after(0, 1)
    asyncio.run(publish_like_a_crashed_relay(pg_janus, first, log=("elsewhere", "janus")))

    with running_relay(pg_janus) as relay:
        wait_until(lambda: "another log" in (read_relay_status(pg_janus).last_error or ""), 10)
        assert relay.relay.acked == 0
    assert len(stream_contents(pg_janus.settings)) == 1


def test_a_stream_written_before_the_log_header_is_continued_where_it_ends(
    pg_janus: Janus,
) -> None:
    """An upgrade: the old relay's message id was "<node>:<app>:<position>", without Janus-Log."""
    submit_goals(pg_janus, 10)
    asyncio.run(publish_like_a_crashed_relay(pg_janus, pg_janus.reader.read_after(0, 4), old=True))

    with running_relay(pg_janus) as relay:
        wait_caught_up(pg_janus)
        assert relay.relay.published == 6
    published = stream_contents(pg_janus.settings)
    assert [p.position for p in published] == list(range(1, 11))
    assert [p.headers[wire.H_MSG_ID] for p in published[4:]] == [
        str(event_id) for event_id in log_event_ids(pg_janus)[4:]
    ]


async def publish_like_a_crashed_relay(
    janus: Janus,
    notifications: list[Any],
    log: tuple[str, str] | None = None,
    old: bool = False,
) -> list[Any]:
    """Publish as a relay of ``log`` (default: this one) would; ``old``: the old message id."""
    settings = janus.settings
    node_id, app_name = log or (settings.node_id, settings.app_name)
    assert settings.nats_url is not None
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.BadRequestError):  # exists, maybe not as spec'd
            await js.add_stream(settings.stream_spec().config())
        acks = []
        for notification in notifications:
            headers = wire.headers_for(notification, node_id, app_name)
            if old:
                del headers[wire.H_LOG]
                headers[wire.H_MSG_ID] = f"{node_id}:{app_name}:{notification.id}"
            subject = wire.subject_for(settings.subject_prefix, notification.topic)
            acks.append(await js.publish(subject, notification.state, headers=headers))
        return acks
    finally:
        await nc.close()


def test_a_publish_lost_on_the_wire_is_sent_again_and_nothing_overtakes_it(
    pg_janus: Janus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined publishes: event 5 vanishes on its way, 6 to 20 reach the server behind it."""
    submit_goals(pg_janus, 20)
    lost: list[str] = []
    send = NatsClient.publish

    async def lossy(client: NatsClient, subject: str, *args: Any, **kw: Any) -> None:
        headers = kw.get("headers") or {}
        if headers.get(wire.H_POSITION) == "5" and not lost:
            lost.append(headers[wire.H_MSG_ID])
            return
        await send(client, subject, *args, **kw)

    monkeypatch.setattr(NatsClient, "publish", lossy)
    with running_relay(pg_janus) as relay:
        wait_caught_up(pg_janus)
        assert relay.relay.published > 20  # 5 and what followed it were sent again

    assert lost == [wire.message_id(log_event_ids(pg_janus)[4])]
    assert_stream_is_the_log(pg_janus)


def test_a_second_relay_waits_for_the_lock_and_takes_over(
    pg_janus: Janus, janus_on: JanusFactory
) -> None:
    standby_janus = janus_on(pg_janus.settings)
    submit_goals(pg_janus, 10)
    with running_relay(pg_janus) as active:
        standby = RelayThread(build_relay(standby_janus, **TEST_OPTIONS)).start()
        try:
            wait_until(lambda: standby.relay.state == "standby", 10, message="standby")
            wait_caught_up(pg_janus)
            assert not standby.ready.is_set()
            assert standby.relay.published == 0
            submit_goals(pg_janus, 10, "while active")
            wait_caught_up(pg_janus)
            active.stop()

            standby.wait_ready()
            submit_goals(pg_janus, 10, "after takeover")
            wait_caught_up(pg_janus)
            assert standby.relay.published == 10
        finally:
            standby.stop()
    assert_stream_is_the_log(pg_janus)


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_the_relay_rides_out_a_nats_restart_losing_and_doubling_nothing(
    tmp_path: Path,
    pg_url: str,
    nats_server_control: NatsServer,
    janus_on: JanusFactory,
    outage: str,
) -> None:
    settings = relay_settings(tmp_path / "janus", nats_server_control.url, pg_url)
    janus = janus_on(settings)
    with running_relay(janus) as relay, Writer(janus, total=400) as writer:
        wait_until(lambda: writer.written >= 100, 30, message="the first writes")
        getattr(nats_server_control, outage)()
        wait_until(lambda: not relay.relay.connected, 10, message="the relay to notice")
        wait_until(lambda: read_relay_status(janus).last_error is not None, 10)
        assert not read_relay_status(janus).connected
        nats_server_control.start()

        writer.finish()
        wait_caught_up(janus, timeout=60)
        wait_until(lambda: healthy(read_relay_status(janus)), 10, message="a clean status")
    assert len(assert_stream_is_the_log(janus)) == 400


def test_status_reports_position_head_lag_and_connection(pg_janus: Janus) -> None:
    submit_goals(pg_janus, 12)
    before = read_relay_status(pg_janus)
    assert (before.position, before.head, before.lag, before.state) == (0, 12, 12, "never-run")

    with running_relay(pg_janus) as relay:
        wait_caught_up(pg_janus)
        wait_until(lambda: read_relay_status(pg_janus).state == "running", 10)
        running = read_relay_status(pg_janus)
        assert (running.position, running.head, running.lag) == (12, 12, 0)
        assert running.connected and running.last_error is None
        assert relay.relay.status().lag == 0

    submit_goals(pg_janus, 3)
    stopped = read_relay_status(pg_janus)
    assert (stopped.state, stopped.connected, stopped.lag) == ("stopped", False, 3)


def test_the_relay_rides_out_dropped_database_connections(pg_janus: Janus) -> None:
    """Every session of the relay's database is terminated, including the one holding its lock."""
    assert pg_janus.settings.database_url is not None
    with running_relay(pg_janus), Writer(pg_janus, total=200) as writer:
        wait_until(lambda: writer.written >= 50, 30, message="the first writes")
        terminate_other_sessions(pg_janus.settings.database_url)
        writer.finish()
        wait_caught_up(pg_janus)
    assert len(assert_stream_is_the_log(pg_janus)) == 200


def terminate_other_sessions(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
