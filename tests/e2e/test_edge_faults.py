"""Faults during catch-up: the cloud ingester SIGKILLed again and again, 0 lost, 0 doubled."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from tests.servers import unique_name, wait_until
from tests.support.edge import edge_cluster, events_of_node, running_edge_relay
from tests.support.edge_procs import Proc, env_for
from tests.support.relay import submit_goals, wait_caught_up

KILLS = 20


@pytest.fixture(params=["sqlite", "postgres"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Janus]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    built = Janus.build(Settings(home=tmp_path / "cloud", database_url=url, node_id="cloud"))
    try:
        yield built
    finally:
        built.close()


def copies(cloud: Janus) -> Counter[object]:
    return Counter(event_id for event_id, _, _ in events_of_node(cloud.app, "n1"))


def kill_one_life(cloud: Janus, env: dict[str, str], early: bool) -> None:
    """Start an ingester and SIGKILL it: as soon as it is up, or after some progress."""
    before = sum(copies(cloud).values())
    ingester = Proc(["edge", "ingest", "--node", "n1"], env)
    try:
        if early:
            wait_until(lambda: ingester.printed("edge ingest ready"), 60, message="ready")
        else:  # mid-catch-up, perhaps mid-transaction
            wait_until(lambda: sum(copies(cloud).values()) > before, 60, message="progress")
    finally:
        ingester.kill()
    assert ingester.proc.returncode == -9


def test_an_ingester_killed_twenty_times_during_catch_up_loses_and_doubles_nothing(
    cloud: Janus, tmp_path: Path
) -> None:
    chance = random.Random(15)
    with edge_cluster("n1") as cluster:
        edge = Janus.build(cluster.edge_settings("n1", tmp_path / "edge"))
        try:
            with running_edge_relay(edge):
                submit_goals(edge, 200, "backlog")
                env = env_for(
                    cloud.settings.home,
                    JANUS_NATS_URL=cluster.hub.url,
                    JANUS_EDGE_SUBJECT_ROOT=cluster.root,
                    JANUS_EDGE_HUB_STREAM=unique_name("edges"),
                    JANUS_EDGE_INGEST_BATCH_SIZE="5",
                    **(
                        {"JANUS_DATABASE_URL": cloud.settings.database_url}
                        if cloud.settings.database_url
                        else {}
                    ),
                )
                for kill in range(KILLS):
                    submit_goals(edge, 10, f"while killing {kill}")  # always more to catch up
                    kill_one_life(cloud, env, chance.random() < 0.3)
                wait_caught_up(edge)
                survivor = Proc(["edge", "ingest", "--node", "n1"], env)
                try:
                    mine = {event_id for event_id, _, _ in events_of_node(edge.app, "n1")}
                    wait_until(lambda: set(copies(cloud)) == mine, 120, message="catch-up")
                finally:
                    survivor.stop()
        finally:
            edge.close()
    assert set(copies(cloud).values()) == {1}, "an edge event was appended twice"
