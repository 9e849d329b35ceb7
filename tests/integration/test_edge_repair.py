"""A gap that lost an aggregate's middle, on both cloud stores, fed hub messages directly.

After the gap, the aggregate's later events wait (parked) instead of leaving a hole in the
cloud's copy; `janus edge import` of the edge's own export fills the hole, appends what waited
after it, and records the gap closed. Nothing is doubled, whatever arrives again afterwards.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bootstrap.container import Janus
from bootstrap.history import open_store
from commands import models as m
from domain.edge import EdgeSync, edge_sync_id
from domain.goal import Goal
from domain.meta import Actor, ActorKind
from event_store.edge_sync import edge_statuses
from replay.edge_repair import import_edge_export
from replay.exchange import ExchangeError, export_events
from replay.store import Store
from tests.support.cli import assert_clean_failure, cli
from tests.support.commands import as_alice
from tests.support.edge import direct_ingester, events_of_node, hub_messages, per_aggregate

OLGA = Actor(ActorKind.USER, "olga", role="operator")


@pytest.fixture
def cloud_store(janus: Janus) -> Iterator[Store]:
    store = open_store(janus.settings, use_views=False)
    try:
        yield store
    finally:
        store.close()


def export(edge: Janus, path: Path, after: int = 0) -> Path:
    store = open_store(edge.settings, use_views=False)
    try:
        export_events(store, path, after)
    finally:
        store.close()
    return path


def goal_with_a_middle(edge: Janus) -> UUID:
    """A goal of three events on the edge (submitted, planned, cancelled), then another goal."""
    goal = UUID(
        str(edge.commands.submit_goal(m.SubmitGoal(text="fit the lock"), as_alice()).aggregate_id)
    )
    edge.commands.record_plan(m.RecordPlan(goal_id=goal, steps=["measure"]), as_alice())
    edge.commands.cancel_goal(m.CancelGoal(goal_id=goal), as_alice())
    edge.commands.submit_goal(m.SubmitGoal(text="after"), as_alice())
    return goal


def the_middle(msgs: list[Any], goal: UUID) -> int:
    """The index of the goal's second event among the hub messages."""
    return next(
        i
        for i, msg in enumerate(msgs)
        if msg.headers["Janus-Aggregate-Id"] == str(goal)
        and msg.headers["Janus-Aggregate-Version"] == "2"
    )


def test_events_after_a_gap_wait_for_their_aggregate_and_the_edge_export_fills_it(
    janus: Janus, edge: Janus, cloud_store: Store, tmp_path: Path
) -> None:
    goal = goal_with_a_middle(edge)
    msgs = hub_messages(edge)
    middle = the_middle(msgs, goal)
    sink = direct_ingester(janus)

    sink.ingest(msgs[:middle] + msgs[middle + 1 :])  # the middle expired before the hub saw it

    (status,) = edge_statuses(janus.app)
    assert (len(status.gaps), status.parked) == (1, 1)
    cloud_goal = [v for _, a, v in events_of_node(janus.app, "n1") if a == goal]
    assert cloud_goal == [1]  # never 1, 3: the cancellation waits for the plan
    sink.ingest(msgs[middle + 1 :])  # redelivered: the parked event is held, not doubled
    assert edge_statuses(janus.app)[0].parked == 1

    result = import_edge_export(cloud_store, export(edge, tmp_path / "n1.jsonl"), OLGA)

    assert (result.written, result.released, result.parked) == (1, 1, 0)
    assert result.duplicates == len(msgs) - 2
    assert [(g["expected"], g["found"]) for g in result.closed] == [(middle + 1, middle + 2)]
    edge_ids = Counter(e for e, _, _ in events_of_node(edge.app, "n1"))
    cloud_ids = Counter(e for e, _, _ in events_of_node(janus.app, "n1"))
    assert cloud_ids == edge_ids  # every edge event once
    assert per_aggregate(events_of_node(janus.app, "n1")) == per_aggregate(
        events_of_node(edge.app, "n1")
    )  # in the edge's order per aggregate
    cancelled: Goal = janus.app.repository.get(goal)  # readable: no version missing
    assert cancelled.version == 3
    sync: EdgeSync = janus.app.repository.get(edge_sync_id("n1"))
    assert sync.open_gaps == [] and sync.gaps[0]["repaired_by"] == result.sha256

    sink.ingest(msgs)  # everything arrives again: nothing new
    again = import_edge_export(cloud_store, tmp_path / "n1.jsonl", OLGA)
    assert (again.written, again.released, again.closed) == (0, 0, [])
    assert Counter(e for e, _, _ in events_of_node(janus.app, "n1")) == edge_ids


def test_an_export_that_starts_inside_the_gap_leaves_it_open_and_writes_nothing(
    janus: Janus, edge: Janus, cloud_store: Store, tmp_path: Path
) -> None:
    goal = goal_with_a_middle(edge)
    msgs = hub_messages(edge)
    middle = the_middle(msgs, goal)
    direct_ingester(janus).ingest(msgs[:middle] + msgs[middle + 1 :])
    head = janus.reader.head()

    # Exported from after the plan: the file cannot fill the hole before the cancellation.
    late = export(edge, tmp_path / "late.jsonl", after=middle + 1)
    with pytest.raises(ExchangeError, match="does not follow the cloud's version 1"):
        import_edge_export(cloud_store, late, OLGA)

    assert janus.reader.head() == head
    assert edge_statuses(janus.app)[0].parked == 1


def test_a_file_not_from_an_edge_or_with_another_node_s_events_is_refused_whole(
    janus: Janus, edge: Janus, cloud_store: Store, tmp_path: Path
) -> None:
    janus.commands.submit_goal(m.SubmitGoal(text="cloud's own"), as_alice())
    own = tmp_path / "cloud.jsonl"
    export_events(cloud_store, own)
    head = janus.reader.head()

    with pytest.raises(ExchangeError, match="exported by this node"):
        import_edge_export(cloud_store, own, OLGA)
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(own.read_bytes().replace(b'"source_node": "local"', b'"source_node": "n1"'))
    with pytest.raises(ExchangeError, match="made by node 'local', not by edge 'n1'"):
        import_edge_export(cloud_store, forged, OLGA)
    assert janus.reader.head() == head


def test_the_cli_imports_an_edge_export_and_says_which_gap_it_closed(
    janus: Janus, edge: Janus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    goal = goal_with_a_middle(edge)
    msgs = hub_messages(edge)
    middle = the_middle(msgs, goal)
    direct_ingester(janus).ingest(msgs[:middle] + msgs[middle + 1 :])
    file = export(edge, tmp_path / "n1.jsonl.gz")
    monkeypatch.setenv("JANUS_HOME", str(janus.settings.home))
    if janus.settings.database_url:
        monkeypatch.setenv("JANUS_DATABASE_URL", janus.settings.database_url)
    else:
        monkeypatch.delenv("JANUS_DATABASE_URL", raising=False)

    assert_clean_failure(cli("edge", "import", str(tmp_path / "missing.jsonl")), "no such file")
    done = cli("edge", "import", str(file), "--json")
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert (body["written"], body["released"], body["gaps_open"]) == (1, 1, [])
    status = cli("edge", "status")
    assert "GAP" not in status.stdout and "0/1" in status.stdout
