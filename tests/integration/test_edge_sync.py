"""Edge nodes sync back to the cloud through real nats-servers: a hub and leaf edges.

Each edge is an embedded Janus whose ordinary relay writes its own stream on its own nats-server
(a leaf of the hub in domain ``edge-<node>``); the hub stream sources every edge stream; the
ingester appends what arrives into the cloud store (SQLite and Postgres).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import nats
import pytest

from bootstrap.container import Janus
from bootstrap.history import open_store
from bootstrap.settings import Settings
from commands import models as m
from domain.edge import EdgeSync, edge_sync_id
from domain.effect import EffectStatus
from domain.meta import Actor, ActorKind
from event_store.edge_sync import EdgeIngester, edge_statuses
from replay.edge_repair import import_edge_export
from replay.exchange import export_events
from tests.servers import wait_until
from tests.support.commands import as_alice
from tests.support.edge import (
    EdgeCluster,
    LoopThread,
    edge_cluster,
    events_of_node,
    per_aggregate,
    running_edge_relay,
    running_ingester,
)
from tests.support.executor import drain, effect_of, grant
from tests.support.relay import submit_goals, wait_caught_up


@pytest.fixture(params=["sqlite", "postgres"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Janus]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    built = Janus.build(Settings(home=tmp_path / "cloud", database_url=url, node_id="cloud"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def edges(tmp_path: Path) -> Iterator[tuple[EdgeCluster, dict[str, Janus]]]:
    built: dict[str, Janus] = {}
    with edge_cluster("n1", "n2") as cluster:
        try:
            for node in cluster.edges:
                built[node] = Janus.build(cluster.edge_settings(node, tmp_path / node))
            yield cluster, built
        finally:
            for janus in built.values():
                janus.close()


def holds_exactly_once(cloud: Janus, edge: Janus, node: str) -> bool:
    return _missing_or_doubled(cloud, edge, node) == (set(), [])


def _missing_or_doubled(cloud: Janus, edge: Janus, node: str) -> tuple[set[object], list[object]]:
    mine = {event_id for event_id, _, _ in events_of_node(edge.app, node)}
    seen = Counter(event_id for event_id, _, _ in events_of_node(cloud.app, node))
    return mine - set(seen), [event_id for event_id, n in seen.items() if n > 1]


def assert_synced(cloud: Janus, edge: Janus, node: str) -> None:
    wait_until(lambda: holds_exactly_once(cloud, edge, node), 60, message=f"{node} in the cloud")
    assert per_aggregate(events_of_node(cloud.app, node)) == per_aggregate(
        events_of_node(edge.app, node)
    )


def test_an_edge_cut_off_keeps_working_and_the_cloud_gets_every_event_exactly_once(
    cloud: Janus, edges: tuple[EdgeCluster, dict[str, Janus]]
) -> None:
    cluster, built = edges
    edge = built["n1"]
    with running_edge_relay(edge), running_ingester(cloud, cluster.ingest_config(["n1"])):
        submit_goals(edge, 3, "before the outage")
        assert_synced(cloud, edge, "n1")

        cluster.hub.stop()  # the link is gone: the edge is on its own
        submit_goals(edge, 5, "while cut off")
        confirmation_id = grant(edge)
        drain(edge.executor())
        assert effect_of(edge, confirmation_id).status is EffectStatus.SUCCEEDED
        job_id = edge.commands.schedule_job(
            m.ScheduleJob(
                name="heartbeat",
                trigger={"kind": "interval", "seconds": 3600},
                action={"name": "notify", "parameters": {"to": "ops"}},
            ),
            as_alice(),
        ).aggregate_id
        edge.relational.catch_up()
        edge.scheduler().run_now(job_id, as_alice("fire-offline"))
        wait_caught_up(edge)  # the edge's own stream holds everything, durably
        assert not holds_exactly_once(cloud, edge, "n1")
        wait_until(
            lambda: [s.link for s in edge_statuses(cloud.app)] == ["down"],
            30,
            message="the ingester to see the link down",
        )

        cluster.hub.start()
        assert_synced(cloud, edge, "n1")
        wait_until(
            lambda: [(s.link, s.lag_events) for s in edge_statuses(cloud.app)] == [("up", 0)],
            30,
            message="status: link up, no lag",
        )
    (status,) = edge_statuses(cloud.app)
    assert (status.node, status.gaps, status.conflicts) == ("n1", [], [])
    # The cloud's views show the edge's work: its goals, its effect, its job's fire.
    cloud.relational.catch_up()
    edge.relational.catch_up()
    assert len(cloud.views.goals(limit=1000)) == len(edge.views.goals(limit=1000)) == 9
    assert [e["status"] for e in cloud.views.effects()] == ["succeeded"]
    assert len(cloud.views.fires(job_id)) == 1


def test_two_edges_at_once_each_in_its_own_domain(
    cloud: Janus, edges: tuple[EdgeCluster, dict[str, Janus]]
) -> None:
    cluster, built = edges
    with (
        running_edge_relay(built["n1"]),
        running_edge_relay(built["n2"]),
        running_ingester(cloud, cluster.ingest_config(["n1", "n2"])),
    ):
        submit_goals(built["n1"], 4, "edge one")
        submit_goals(built["n2"], 6, "edge two")
        assert_synced(cloud, built["n1"], "n1")
        assert_synced(cloud, built["n2"], "n2")
    assert [s.node for s in edge_statuses(cloud.app)] == ["n1", "n2"]


def test_a_retention_gap_is_recorded_never_skipped_silently_and_the_edge_export_repairs_it(
    cloud: Janus, edges: tuple[EdgeCluster, dict[str, Janus]], tmp_path: Path
) -> None:
    cluster, built = edges
    edge = built["n1"]
    # The edge stream keeps only a few kilobytes: a long outage outlives its oldest events.
    with (
        running_edge_relay(edge, max_bytes=8 * 1024),
        running_ingester(cloud, cluster.ingest_config(["n1"])) as ingester,
    ):
        goal = edge.commands.submit_goal(m.SubmitGoal(text="before"), as_alice()).aggregate_id
        assert_synced(cloud, edge, "n1")
        synced = edge_statuses(cloud.app)[0].origin_sequence
        cluster.hub.stop()
        # The goal's middle is lost with the rest; its end (cancelled last) is still held.
        edge.commands.record_plan(m.RecordPlan(goal_id=goal, steps=["wait"]), as_alice())
        submit_goals(edge, 40, "lost to retention")
        edge.commands.cancel_goal(m.CancelGoal(goal_id=goal), as_alice())
        wait_caught_up(edge)
        cluster.hub.start()
        wait_until(lambda: ingester.gaps == 1, 60, message="the gap to be recorded")
        wait_until(
            lambda: [s.lag_events for s in edge_statuses(cloud.app)] == [0],
            30,
            message="the rest of the stream to arrive",
        )

    (status,) = edge_statuses(cloud.app)
    (gap,) = status.gaps
    assert gap["expected"] == synced + 1
    assert int(str(gap["found"])) > synced + 1
    sync: EdgeSync = cloud.app.repository.get(edge_sync_id("n1"))
    assert sync.gaps == status.gaps
    # What did arrive arrived once; the goal's end waits for its middle instead of a hole.
    seen = Counter(event_id for event_id, _, _ in events_of_node(cloud.app, "n1"))
    assert set(seen.values()) == {1}
    assert status.parked == 1
    assert [v for _, a, v in events_of_node(cloud.app, "n1") if a == goal] == [1]

    # The repair: the edge's own export, imported in the cloud.
    file = tmp_path / "n1.jsonl"
    with closing(open_store(edge.settings, use_views=False)) as edge_store:
        export_events(edge_store, file)
    with closing(open_store(cloud.settings, use_views=False)) as cloud_store:
        repaired = import_edge_export(cloud_store, file, Actor(ActorKind.USER, "olga"))
    assert repaired.written > 0 and repaired.released == 1
    assert [(g["expected"], g["found"]) for g in repaired.closed] == [
        (gap["expected"], gap["found"])
    ]
    assert holds_exactly_once(cloud, edge, "n1")
    assert per_aggregate(events_of_node(cloud.app, "n1")) == per_aggregate(
        events_of_node(edge.app, "n1")
    )
    (status,) = edge_statuses(cloud.app)
    assert status.parked == 0 and status.gaps[0]["repaired_by"] == repaired.sha256


def test_a_re_created_edge_stream_is_recorded_as_a_gap(
    cloud: Janus, edges: tuple[EdgeCluster, dict[str, Janus]]
) -> None:
    cluster, built = edges
    edge = built["n1"]
    with (
        running_edge_relay(edge),
        running_ingester(cloud, cluster.ingest_config(["n1"])) as ingester,
    ):
        submit_goals(edge, 2, "before")
        assert_synced(cloud, edge, "n1")
        wait_until(
            lambda: edge_statuses(cloud.app)[0].link == "up", 30, message="a probe of the edge"
        )
        asyncio.run(delete_stream(cluster.edges["n1"].url, edge.settings.stream_name))
        submit_goals(edge, 2, "after")  # the relay creates the stream again
        wait_until(lambda: ingester.gaps == 1, 60, message="the re-created stream noticed")

    sync: EdgeSync = cloud.app.repository.get(edge_sync_id("n1"))
    assert [g["reason"] for g in sync.gaps] == ["stream-recreated"]


async def delete_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def test_a_second_ingester_waits_for_the_lock_and_takes_over_when_the_first_stops(
    cloud: Janus, edges: tuple[EdgeCluster, dict[str, Janus]]
) -> None:
    cluster, built = edges
    edge = built["n1"]
    config = cluster.ingest_config(["n1"])
    first, second = (
        EdgeIngester(cloud.app, config, "cloud", cloud.leader_lock("edge-ingest")) for _ in range(2)
    )
    with running_edge_relay(edge):
        leading = LoopThread(first.run).start()
        standby = LoopThread(second.run).start(wait=False)
        try:
            submit_goals(edge, 3, "while the first leads")
            assert_synced(cloud, edge, "n1")
            assert (standby.ready.is_set(), second.appended) == (False, 0)
            leading.stop()
            wait_until(standby.ready.is_set, 30, message="the standby to take the lock")
            submit_goals(edge, 3, "after the hand-over")
            assert_synced(cloud, edge, "n1")
            assert second.appended > 0  # the hand-over did not stall the sync
        finally:
            leading.stop()
            standby.stop()
