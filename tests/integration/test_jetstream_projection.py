"""Projections fed from JetStream, and the same checks fed from the log (embedded mode).

Each test has its own stream and subject prefix. Messages are published here exactly as the
relay does it (``event_store.messages``: subject, headers, body = the stored state), so these
tests pin the consumer to the wire contract, not to the relay's code.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.engine import Connection

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from event_store.reader import LoggedEvent
from projections.feed_status import FeedState, read_feed_status
from projections.jetstream import (
    FeedConfig,
    StreamMismatch,
    consumer_name,
)
from projections.relational import RelationalProjection
from projections.runner import ProjectionRunner, SqlProjection
from projections.supervisor import ProjectorProcess
from tests.servers import NatsServer, unique_name, wait_until
from tests.support.commands import as_alice
from tests.support.jetstream import (
    Relay,
    delete_stream,
    jetstream_settings,
    rebuilt_rows,
    view_rows,
    workload,
)

# Short timeouts so outages and stalls are noticed in test time, not production time.
FAST = FeedConfig(
    batch_size=50,
    fetch_timeout=0.2,
    watchdog_fetches=5,
    poll_interval=0.05,
    backoff_max=0.5,
    reconnect_wait=0.2,
    client_reconnects=2,
)
CATCH_UP = 30.0
SLOW_EVENT_SECONDS = 0.15


# -- the relay's half of the contract, for tests --------------------------------------------------


# -- workload and comparison ----------------------------------------------------------------------


def assert_equals_rebuild(janus: Janus, directory: Path) -> None:
    live, rebuilt = view_rows(janus.views_engine), rebuilt_rows(janus, directory)
    assert sum(map(len, live.values())) > 0
    for table in rebuilt:
        assert live[table] == rebuilt[table], table


def caught_up(runner: ProjectionRunner, janus: Janus, timeout: float = CATCH_UP) -> None:
    head = janus.app.head()
    wait_until(lambda: runner.position >= head, timeout, message=f"{runner.name} at {head}")


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(params=["jetstream", "log-postgres", "log-sqlite"])
def feed_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(feed_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    home = tmp_path / "janus"
    if feed_kind == "log-sqlite":
        return Settings(home=home, poll_interval_seconds=0.05)
    pg_url: str = request.getfixturevalue("pg_url")
    if feed_kind == "log-postgres":
        return Settings(home=home, database_url=pg_url, poll_interval_seconds=0.05)
    return jetstream_settings(home, pg_url, request.getfixturevalue("nats_url"))


@pytest.fixture
def janus(settings: Settings) -> Iterator[Janus]:
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()
        if settings.nats_url is not None:
            delete_stream(settings)


@pytest.fixture
def relay(janus: Janus) -> Relay:
    return Relay(janus)


def deliver(janus: Janus, relay: Relay) -> None:
    """What the relay would do by itself; the log feed needs nothing."""
    if janus.settings.nats_url is not None:
        relay.publish()


@contextmanager
def projecting(
    janus: Janus, runners: list[ProjectionRunner] | None = None, config: FeedConfig = FAST
) -> Iterator[ProjectorProcess]:
    process = ProjectorProcess(
        janus.projections, runners or [janus.relational], janus.feed_source(), config
    )
    ready = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            process.run(on_ready=ready.set)
        except BaseException as error:
            failures.append(error)
            raise

    thread = threading.Thread(target=run, name="projector", daemon=True)
    thread.start()
    wait_until(lambda: ready.is_set() or not thread.is_alive(), 20, message="projector ready")
    assert ready.is_set(), failures
    try:
        yield process
    finally:
        process.stop()
        thread.join(20)
        assert not thread.is_alive(), "projector did not stop"
    assert not failures
    # The feed pauses the garbage collector while it applies a batch, and only then.
    assert gc.isenabled()


# -- a projection that can be poisoned -------------------------------------------------------------


class GoalTexts(SqlProjection):
    """Goal texts in order; refuses any containing 'poison' until fixed."""

    version = 1

    def __init__(self) -> None:
        self.name = unique_name("texts")
        self.fixed = False
        self.metadata = MetaData()
        self.table = Table(
            self.name,
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("text", String(100)),
        )

    def process_event(self, event: LoggedEvent, conn: Connection) -> None:
        text = getattr(event.event, "text", None)
        if text is None:
            return
        if "poison" in text and not self.fixed:
            raise ValueError(f"cannot project {text!r}")
        conn.execute(insert(self.table).values(position=event.position, text=text))


class SlowGoalTexts(GoalTexts):
    """A view slower than the consumer's ack wait, so the server redelivers what it holds."""

    def process_event(self, event: LoggedEvent, conn: Connection) -> None:
        time.sleep(SLOW_EVENT_SECONDS)  # the view's own slowness, not a wait for anything
        super().process_event(event, conn)


def goal_texts(
    janus: Janus, projection: GoalTexts | None = None
) -> tuple[ProjectionRunner, GoalTexts]:
    projection = projection or GoalTexts()
    runner = ProjectionRunner(projection, janus.reader, janus.views_engine)
    runner.setup()
    return runner, projection


def texts(runner: ProjectionRunner, projection: GoalTexts) -> list[str]:
    with runner.engine.connect() as conn:
        query = select(projection.table.c.text).order_by(projection.table.c.position)
        return list(conn.scalars(query))


def submit(janus: Janus, *goal_texts_: str) -> int:
    position = 0
    for text in goal_texts_:
        position = janus.commands.submit_goal(m.SubmitGoal(text=text), as_alice()).position
    return position


# -- every feed -----------------------------------------------------------------------------------


def test_view_equals_a_rebuild_from_the_log_across_projector_restarts(
    janus: Janus, relay: Relay, tmp_path: Path
) -> None:
    workload(janus, 30)
    deliver(janus, relay)
    with projecting(janus):
        caught_up(janus.relational, janus)
        workload(janus, 30)  # arriving while it runs
        deliver(janus, relay)
        caught_up(janus.relational, janus)
    workload(janus, 10)  # arriving while it is down
    deliver(janus, relay)
    with projecting(janus):
        caught_up(janus.relational, janus)
    assert janus.relational.status().lag == 0
    assert_equals_rebuild(janus, tmp_path)


@pytest.mark.parametrize("resolution", ["retry", "skip"])
def test_a_poison_event_stalls_visibly_until_retried_or_skipped(
    janus: Janus, relay: Relay, resolution: str
) -> None:
    runner, projection = goal_texts(janus)
    submit(janus, "a", "b")
    poison_at = submit(janus, "poison pill")
    submit(janus, "c")
    deliver(janus, relay)
    with projecting(janus, [runner]) as process:
        wait_until(lambda: runner.status().state == "stalled", message="the stall")
        status = runner.status()
        assert (status.error_position, status.position) == (poison_at, poison_at - 1)
        assert "cannot project 'poison pill'" in (status.error or "")
        assert texts(runner, projection) == ["a", "b"]
        if process.uses_jetstream:
            feed = process.feeds[runner.name]
            wait_until(lambda: feed.status().state == FeedState.STALLED, message="feed stalled")
            assert str(poison_at) in (feed.status().error or "")

            # Held un-acked: the consumer's ack floor is the last event before the poison.
            def acked_up_to_b() -> bool:
                info = relay.consumer_info(feed.consumer)
                return info.ack_floor is not None and info.ack_floor.stream_seq == 2

            wait_until(acked_up_to_b, message="ack floor at b")
            assert relay.consumer_info(feed.consumer).num_ack_pending == 2
        submit(janus, "d")  # arrives while stalled: must wait behind the poison
        deliver(janus, relay)
        assert texts(runner, projection) == ["a", "b"]
        if resolution == "retry":
            projection.fixed = True
            runner.retry()
        else:
            runner.skip(poison_at)
        caught_up(runner, janus)
        if process.uses_jetstream:
            info_after = relay.consumer_info(process.feeds[runner.name].consumer)
            wait_until(lambda: not relay.consumer_info(info_after.name).num_ack_pending)
            assert process.feeds[runner.name].status().state == FeedState.RUNNING
    kept = ["poison pill"] if resolution == "retry" else []
    assert texts(runner, projection) == ["a", "b", *kept, "c", "d"]
    assert runner.status().state == "running"


# -- JetStream only -------------------------------------------------------------------------------


@pytest.fixture
def js_janus(tmp_path: Path, pg_url: str, nats_url: str) -> Iterator[Janus]:
    settings = jetstream_settings(tmp_path / "janus", pg_url, nats_url)
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()
        delete_stream(settings)


def test_duplicate_messages_in_the_stream_are_not_applied_twice(
    js_janus: Janus, tmp_path: Path
) -> None:
    relay = Relay(js_janus)
    workload(js_janus, 20)
    relay.publish()
    relay.republish()  # every event twice in the stream
    with projecting(js_janus):
        caught_up(js_janus.relational, js_janus)
        workload(js_janus, 10)
        first_new = relay.position
        relay.publish()
        relay.republish(after=first_new // 2)  # old and new ones again, interleaved
        caught_up(js_janus.relational, js_janus)
        consumer = consumer_name("relational", js_janus.relational.projection.version)
        wait_until(lambda: relay.consumer_info(consumer).num_pending == 0, message="all read")
        assert js_janus.relational.status().state == "running"
    assert_equals_rebuild(js_janus, tmp_path)


def test_redeliveries_of_a_batch_slower_than_the_ack_wait_are_not_applied_twice(
    js_janus: Janus,
) -> None:
    relay = Relay(js_janus)
    runner, projection = goal_texts(js_janus, SlowGoalTexts())
    names = [f"g{i}" for i in range(30)]
    submit(js_janus, *names)
    relay.publish()
    # Each batch takes 1.5s to apply, half as long again as the server waits for its ack.
    config = replace(FAST, batch_size=10, ack_wait=1.0)
    with projecting(js_janus, [runner], config) as process:
        caught_up(runner, js_janus)
        feed = process.feeds[runner.name]
        assert feed.status().redeliveries, "nothing was redelivered: the test proves nothing"
        wait_until(lambda: not relay.consumer_info(feed.consumer).num_ack_pending)
    assert texts(runner, projection) == names
    assert runner.status().state == "running"


def test_a_message_that_is_not_a_janus_event_holds_the_feed_until_removed(
    js_janus: Janus,
) -> None:
    relay = Relay(js_janus)
    runner, projection = goal_texts(js_janus)
    submit(js_janus, "a")
    relay.publish()
    junk = relay.publish_raw(b"not an event", {"Janus-Position": "not a number"})
    submit(js_janus, "b")
    relay.publish()
    with projecting(js_janus, [runner]) as process:
        feed = process.feeds[runner.name]
        wait_until(lambda: feed.status().state == FeedState.STALLED, message="feed stalled")
        assert f"sequence {junk} is not a Janus event" in (feed.status().error or "")
        assert texts(runner, projection) == ["a"]
        # What another process (janus project status) reads:
        seen = read_feed_status(js_janus.views_engine, feed.consumer)
        assert seen is not None and seen.state == FeedState.STALLED
        assert f"nats stream rmm {js_janus.settings.stream_name} {junk}" in (seen.error or "")
        relay.delete_message(junk)
        caught_up(runner, js_janus)
        assert feed.status().state == FeedState.RUNNING
    assert texts(runner, projection) == ["a", "b"]
    stopped = read_feed_status(js_janus.views_engine, feed.consumer)
    assert stopped is not None and (stopped.state, stopped.error) == (FeedState.STOPPED, None)


def test_a_projection_behind_the_stream_start_catches_up_from_the_log(
    js_janus: Janus, tmp_path: Path
) -> None:
    """The stream lost old events (retention, a purge): the log still has them."""
    relay = Relay(js_janus)
    workload(js_janus, 10)
    relay.position = js_janus.app.head() // 2  # the first half never reached this stream
    relay.publish()
    with projecting(js_janus) as process:
        caught_up(js_janus.relational, js_janus)
        workload(js_janus, 5)
        relay.publish()
        caught_up(js_janus.relational, js_janus)
        assert process.feeds["relational"].resubscribes >= 1
    assert_equals_rebuild(js_janus, tmp_path)


def test_a_message_deleted_from_the_stream_is_taken_from_the_log(js_janus: Janus) -> None:
    """A hole in the stream sequence, then an event the stream lacks but the log has."""
    relay = Relay(js_janus)
    runner, projection = goal_texts(js_janus)
    submit(js_janus, "a", "b", "c", "d")
    relay.publish()
    relay.delete_message(3)  # "c", before any projector read it
    with projecting(js_janus, [runner]) as process:
        caught_up(runner, js_janus)
        assert process.feeds[runner.name].resubscribes >= 1
    assert texts(runner, projection) == ["a", "b", "c", "d"]


def test_a_stream_holding_events_this_log_lacks_is_refused(js_janus: Janus, tmp_path: Path) -> None:
    """Two stores pointed at one stream: the second projector must not mix the first's events
    into its views."""
    workload(js_janus, 3)
    Relay(js_janus).publish()
    other_settings = js_janus.settings.model_copy(
        update={"home": tmp_path / "other", "database_url": None}
    )
    other = Janus.build(other_settings)
    try:
        process = ProjectorProcess(other.projections, [other.relational], other.feed_source(), FAST)
        with pytest.raises(StreamMismatch, match="is the stream shared with another store"):
            process.run()
        assert other.relational.position == 0
    finally:
        other.close()


def test_a_store_outage_is_waited_out_and_nothing_is_lost(js_janus: Janus, tmp_path: Path) -> None:
    """The views' database refuses writes for a while (here: a SQLite file locked by the test)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'views.sqlite'}", connect_args={"timeout": 0.1})
    runner = ProjectionRunner(RelationalProjection(), js_janus.reader, engine)
    runner.setup()
    relay = Relay(js_janus)
    workload(js_janus, 5)
    relay.publish()
    with projecting(js_janus, [runner]) as process:
        feed = process.feeds[runner.name]
        caught_up(runner, js_janus)
        with engine.connect() as blocker:
            blocker.exec_driver_sql("BEGIN EXCLUSIVE")
            workload(js_janus, 10)
            relay.publish()
            wait_until(lambda: feed.status().state == FeedState.DISCONNECTED, message="outage")
            assert "database is locked" in (feed.status().error or "")
            blocker.exec_driver_sql("ROLLBACK")
        caught_up(runner, js_janus)
        wait_until(lambda: feed.status().state == FeedState.RUNNING, message="recovery")
    assert view_rows(engine) == rebuilt_rows(js_janus, tmp_path)
    engine.dispose()


def test_a_consumer_deleted_under_a_running_projector_is_recreated(
    js_janus: Janus, tmp_path: Path
) -> None:
    relay = Relay(js_janus)
    workload(js_janus, 10)
    with projecting(js_janus) as process:  # before the relay: the projector makes the stream
        relay.publish()
        caught_up(js_janus.relational, js_janus)
        relay.delete_consumer(process.feeds["relational"].consumer)
        workload(js_janus, 10)
        relay.publish()
        caught_up(js_janus.relational, js_janus)
    assert_equals_rebuild(js_janus, tmp_path)


def test_a_paused_consumer_is_waited_for_not_fought(
    tmp_path: Path, pg_url: str, nats_server_control: NatsServer
) -> None:
    """The watchdog asks the server why a subscription is silent; a pause is a good answer.
    (Pausing needs nats-server 2.11; the private server is recent.)"""
    janus = Janus.build(jetstream_settings(tmp_path / "janus", pg_url, nats_server_control.url))
    relay = Relay(janus)
    try:
        workload(janus, 5)
        relay.publish()
        with projecting(janus) as process:
            feed = process.feeds["relational"]
            caught_up(janus.relational, janus)
            relay.pause_consumer(feed.consumer, seconds=2.5)
            workload(janus, 5)
            relay.publish()
            caught_up(janus.relational, janus)
            assert feed.status().resubscribes == 0
        assert_equals_rebuild(janus, tmp_path)
    finally:
        janus.close()


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_projector_resumes_after_a_nats_restart_losing_and_doubling_nothing(
    tmp_path: Path, pg_url: str, nats_server_control: NatsServer, outage: str
) -> None:
    settings = jetstream_settings(tmp_path / "janus", pg_url, nats_server_control.url)
    janus = Janus.build(settings)
    relay = Relay(janus)
    try:
        workload(janus, 20)
        relay.publish()
        with projecting(janus) as process:
            feed = process.feeds["relational"]
            caught_up(janus.relational, janus)
            before = janus.app.head()
            workload(janus, 300)
            relay.publish()
            # Down while the projector is busy with those: some deliveries and acks are lost.
            wait_until(lambda: janus.relational.position > before, message="busy")
            nats_server_control.stop() if outage == "stop" else nats_server_control.kill()
            # Down for longer than the client's own reconnects: the feed must reconnect itself.
            wait_until(lambda: feed.status().connects > 1, message="the feed reconnecting")
            assert feed.status().state == FeedState.DISCONNECTED
            seen = read_feed_status(janus.views_engine, feed.consumer)
            assert seen is not None and seen.state == FeedState.DISCONNECTED
            workload(janus, 10)
            nats_server_control.start()
            relay.publish()
            caught_up(janus.relational, janus)
            assert feed.status().state == FeedState.RUNNING
        assert_equals_rebuild(janus, tmp_path)
    finally:
        janus.close()
