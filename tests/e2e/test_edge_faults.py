"""Faults during catch-up: the ingester, the edge relay, the edge nats-server and the hub
nats-server SIGKILLed at random points, 20 times in one run: 0 events lost, 0 doubled.

The kills are drawn from a seeded random generator; the seed is printed (shown when the test
fails) and ``JANUS_KILL_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from tests.servers import wait_until
from tests.support.edge import edge_cluster, events_of_node, per_aggregate
from tests.support.edge_faults import EDGE_SERVER, HUB_SERVER, INGESTER, RELAY, CatchUpFleet
from tests.support.relay import submit_goals, wait_caught_up

KILLS = 20
# Each server kill makes the hub's sourcing wait for its next retry (~10 s): at least two kills
# of every kind, and the rest mostly on the two processes that are cheap to restart.
AT_LEAST = [INGESTER, RELAY, EDGE_SERVER, HUB_SERVER] * 2
WEIGHTS = {INGESTER: 5, RELAY: 5, EDGE_SERVER: 1, HUB_SERVER: 1}


@pytest.fixture(params=["sqlite", "postgres"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Janus]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    built = Janus.build(Settings(home=tmp_path / "cloud", database_url=url, node_id="cloud"))
    try:
        yield built
    finally:
        built.close()


def kill_plan(chance: random.Random) -> list[tuple[str, bool]]:
    """(process kind, whether to wait for it to move something first) for every kill."""
    kinds = AT_LEAST + chance.choices(
        list(WEIGHTS), weights=list(WEIGHTS.values()), k=KILLS - len(AT_LEAST)
    )
    chance.shuffle(kinds)
    return [(kind, chance.random() < 0.6) for kind in kinds]


@pytest.mark.timeout(900)  # ~20 process restarts; each janus start is seconds of imports
def test_edge_events_survive_twenty_kills_of_ingester_relay_and_both_servers_once_each_in_order(
    cloud: Janus, tmp_path: Path
) -> None:
    seed = int(os.environ.get("JANUS_KILL_SEED") or random.SystemRandom().randrange(2**32))
    print(f"kill seed {seed} (JANUS_KILL_SEED={seed} replays it)")
    plan = kill_plan(random.Random(seed))
    began = time.monotonic()
    with edge_cluster("n1") as cluster:
        edge = Janus.build(cluster.edge_settings("n1", tmp_path / "edge"))
        try:
            submit_goals(edge, 200, "backlog")
            fleet = CatchUpFleet(cluster, "n1", edge, cloud)
            try:
                for number, (kind, after_progress) in enumerate(plan):
                    submit_goals(edge, 10, f"before kill {number}")  # always more to catch up
                    fleet.kill_and_restart(kind, after_progress)
                    print(f"{time.monotonic() - began:6.1f}s kill {number}: {kind}", flush=True)
                wait_caught_up(edge, 120)
                mine = events_of_node(edge.app, "n1")
                wanted = {event_id for event_id, _, _ in mine}
                wait_until(lambda: set(fleet.copies()) == wanted, 180, message="the catch-up")
            finally:
                fleet.stop()
        finally:
            edge.close()
    assert set(fleet.copies().values()) == {1}, "an edge event was appended twice"
    assert per_aggregate(events_of_node(cloud.app, "n1")) == per_aggregate(mine)
