"""Edge sync's pure parts: the EdgeSync aggregate, server configs, names and headers."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest

from adapters.nats_leaf import edge_plan, hub_plan
from domain.edge import EdgeSync, edge_sync_id
from domain.errors import InvalidValue
from domain.meta import Actor, CommandContext
from event_store.edge_sync import (
    H_STREAM_SOURCE,
    edge_stream_name,
    hub_stream_config,
    node_of,
    origin_sequence,
)

CTX = CommandContext("c", "c", "c", Actor.system("test"), "cloud")


def test_a_gap_is_recorded_once_however_often_it_is_seen() -> None:
    sync = EdgeSync.open("n1", CTX)
    assert sync.id == edge_sync_id("n1")
    assert sync.detect_gap(3, 5, "retention", CTX)
    assert not sync.detect_gap(3, 5, "retention", CTX)
    assert [(g["expected"], g["found"]) for g in sync.gaps] == [(3, 5)]
    with pytest.raises(InvalidValue):
        sync.detect_gap(5, 5, "retention", CTX)


def test_a_conflict_is_recorded_once_per_edge_event() -> None:
    sync = EdgeSync.open("n1", CTX)
    event_id, aggregate_id = uuid4(), uuid4()
    assert sync.record_conflict(event_id, aggregate_id, 2, 7, CTX)
    assert not sync.record_conflict(event_id, aggregate_id, 2, 7, CTX)
    assert [c["event_id"] for c in sync.conflicts] == [str(event_id)]


@pytest.mark.parametrize("node", ["a.b", "", "x" * 49, "a b"])
def test_a_node_id_must_fit_a_domain_a_stream_and_a_subject(node: str) -> None:
    with pytest.raises(InvalidValue):
        EdgeSync.open(node, CTX)


def test_an_edge_server_is_a_leaf_in_its_own_domain_that_fsyncs_every_write(
    tmp_path: Path,
) -> None:
    config = json.loads(edge_plan(tmp_path, "n1", "127.0.0.1", 4250, "nats-leaf://h:7422").config())
    assert config["jetstream"]["domain"] == "edge-n1"
    assert config["jetstream"]["sync_interval"] == "always"
    assert config["leafnodes"]["remotes"] == [{"urls": ["nats-leaf://h:7422"]}]
    hub = json.loads(hub_plan(tmp_path, "127.0.0.1", 4222, 7422).config())
    assert (hub["jetstream"]["domain"], hub["leafnodes"]["port"]) == ("hub", 7422)
    with pytest.raises(ValueError, match="nats-leaf://"):
        edge_plan(tmp_path, "n1", "127.0.0.1", 4250, "http://h:7422")


def test_the_hub_stream_sources_each_edge_through_its_domain_api() -> None:
    config = hub_stream_config("janus-edges", ["n2", "n1"])
    assert [(s.name, s.external.api if s.external else None) for s in config.sources or []] == [
        (edge_stream_name("n1"), "$JS.edge-n1.API"),
        (edge_stream_name("n2"), "$JS.edge-n2.API"),
    ]


def test_a_sourced_message_names_its_node_and_origin_sequence() -> None:
    assert node_of("janus.edge.n1.Goal", "janus") == "n1"
    assert origin_sequence({H_STREAM_SOURCE: "janus-edge-n1:ab12 9 > >"}) == 9
    with pytest.raises(ValueError):
        node_of("janus.events.Goal", "janus")
