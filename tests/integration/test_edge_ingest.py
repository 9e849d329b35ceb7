"""The cloud ingester's append on both stores, fed hub messages directly (no servers needed).

The messages are what the hub stream delivers: the edge relay's wire contract plus the
``Nats-Stream-Source`` header the hub adds (origin stream, origin sequence).
"""

from __future__ import annotations

from collections import Counter

from eventsourcing.persistence import StoredEvent

from bootstrap.container import Janus
from commands import models as m
from domain.edge import EdgeSync, edge_sync_id
from event_store.edge_sync import (
    edge_statuses,
)
from tests.support.commands import as_alice
from tests.support.edge import direct_ingester, events_of_node, hub_messages


def submit(edge: Janus, count: int) -> None:
    for i in range(count):
        edge.commands.submit_goal(m.SubmitGoal(text=f"goal {i}"), as_alice())


def cloud_copies(cloud: Janus) -> Counter[object]:
    return Counter(event_id for event_id, _, _ in events_of_node(cloud.app, "n1"))


def test_a_repeat_is_a_no_op_in_any_order_and_the_cursor_never_goes_back(
    janus: Janus, edge: Janus
) -> None:
    submit(edge, 4)
    msgs = hub_messages(edge)
    sink = direct_ingester(janus)

    sink.ingest(msgs)
    sink.ingest(list(reversed(msgs)))
    sink.ingest([msgs[2], msgs[0]])

    expected = {event_id for event_id, _, _ in events_of_node(edge.app, "n1")}
    assert cloud_copies(janus) == Counter(dict.fromkeys(expected, 1))
    assert sink.duplicates == len(msgs) + 2
    (status,) = edge_statuses(janus.app)
    assert (status.origin_sequence, status.gaps) == (len(msgs), [])


def test_a_jump_in_the_origin_sequence_is_recorded_once_as_a_gap(janus: Janus, edge: Janus) -> None:
    submit(edge, 6)
    msgs = hub_messages(edge)
    sink = direct_ingester(janus)

    sink.ingest(msgs[:2])
    sink.ingest([msgs[1], msgs[4], msgs[5]])  # 3 and 4 expired before the hub saw them
    sink.ingest(msgs[4:])  # redelivered after a restart: no second gap

    sync: EdgeSync = janus.app.repository.get(edge_sync_id("n1"))
    assert [(g["expected"], g["found"], g["reason"]) for g in sync.gaps] == [(3, 5, "retention")]
    assert [s.gaps for s in edge_statuses(janus.app)] == [sync.gaps]
    assert sum(cloud_copies(janus).values()) == len(msgs) - 2


def test_an_edge_event_whose_place_the_cloud_filled_is_kept_apart_as_a_conflict(
    janus: Janus, edge: Janus
) -> None:
    submit(edge, 1)
    msgs = hub_messages(edge)
    first = edge.reader.read_after(0, 1)[0]
    # The cloud already holds a different event at the edge goal's (aggregate, version).
    own = StoredEvent(
        first.originator_id,
        first.originator_version,
        first.topic,
        first.state.replace(b"goal 0", b"cloud's own"),
    )
    janus.app.recorder.insert_events([own])
    sink = direct_ingester(janus)

    sink.ingest(msgs)
    sink.ingest(msgs)

    sync: EdgeSync = janus.app.repository.get(edge_sync_id("n1"))
    assert [(c["aggregate_id"], c["version"]) for c in sync.conflicts] == [
        (str(first.originator_id), first.originator_version)
    ]
    assert sink.conflicts == 1
    # Never overwritten: the cloud's own event stays where it was, the edge's is not appended.
    states = [n.state for n in janus.reader.read_after(0, 100)]
    assert (own.state in states, first.state in states) == (True, False)


def test_an_edge_event_the_cloud_already_holds_by_import_is_a_duplicate_not_a_conflict(
    janus: Janus, edge: Janus
) -> None:
    submit(edge, 2)
    msgs = hub_messages(edge)
    janus.app.recorder.insert_events(
        [
            StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
            for n in edge.reader.read_after(0, 10)
        ]
    )
    sink = direct_ingester(janus)

    sink.ingest(msgs)

    assert (sink.conflicts, sink.duplicates) == (0, len(msgs))
    assert set(cloud_copies(janus).values()) == {1}
