"""A cloud operator's grant reaches the edge that owns the confirmation, through real servers.

The cloud runs on SQLite and on Postgres (the edge on its embedded store).

The cloud records a request (never the grant itself: the confirmation is the edge's); the
ingester sends it to the hub's command stream; the edge pulls it across the leaf link, applies it
through its command path and executor, and its answer syncs back. If the edge decided otherwise
meanwhile, the edge records the conflict and the cloud shows the request as conflicted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from bootstrap.container import Janus
from bootstrap.edge import build_command_consumer, edge_requests
from bootstrap.settings import Settings
from commands import models as m
from commands.edge_requests import ApplyEdgeRequest, SendEdgeRequest
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.edge_requests import EdgeRequest, EdgeRequestOutcome, RequestKind, outcome_id
from domain.errors import InvalidTransition
from event_store.edge_sync import edge_statuses
from tests.servers import wait_until
from tests.support.cli import as_json, assert_clean_failure, cli, ok
from tests.support.commands import pending_confirmation
from tests.support.edge import (
    EdgeCluster,
    LoopThread,
    edge_cluster,
    events_of_node,
    running_edge_relay,
    running_ingester,
)
from tests.support.executor import OPERATOR, door_ledger, drain


@pytest.fixture(params=["sqlite", "postgres"])
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Janus]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    built = Janus.build(Settings(home=tmp_path / "cloud", database_url=url, node_id="cloud"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[EdgeCluster, Janus]]:
    with edge_cluster("n1") as cluster:
        settings = cluster.edge_settings("n1", tmp_path / "n1", edge_subject_root=cluster.root)
        built = Janus.build(settings)
        try:
            yield cluster, built
        finally:
            built.close()


def confirmation(janus: Janus, confirmation_id: UUID) -> Confirmation:
    found: Confirmation = janus.app.repository.get(confirmation_id)
    return found


def in_cloud(cloud: Janus, ident: UUID) -> bool:
    return ident in {aggregate_id for _, aggregate_id, _ in events_of_node(cloud.app, "n1")}


def request(cloud: Janus, request_id: UUID) -> EdgeRequest:
    found: EdgeRequest = cloud.app.repository.get(request_id)
    return found


def send_grant(cloud: Janus, confirmation_id: UUID) -> UUID:
    sent = edge_requests(cloud).send(
        SendEdgeRequest(confirmation_id=confirmation_id, kind=RequestKind.GRANT), OPERATOR
    )
    assert sent.outcome == "sent"
    return sent.aggregate_id


def test_a_cloud_grant_is_applied_by_the_edge_and_the_door_unlocks_once(
    cloud: Janus, edge: tuple[EdgeCluster, Janus]
) -> None:
    cluster, janus = edge
    confirmation_id = pending_confirmation(janus)
    consumer = build_command_consumer(janus)
    with (
        running_edge_relay(janus),
        running_ingester(cloud, cluster.ingest_config(["n1"])),
    ):
        wait_until(lambda: in_cloud(cloud, confirmation_id), 60, message="the edge's confirmation")
        # The cloud never writes the edge's confirmation: it sends a request.
        with pytest.raises(InvalidTransition, match="belongs to edge n1"):
            cloud.commands.grant_confirmation(
                m.GrantConfirmation(confirmation_id=confirmation_id), OPERATOR
            )
        request_id = send_grant(cloud, confirmation_id)
        assert confirmation(cloud, confirmation_id).status is ConfirmationStatus.PENDING
        loop = LoopThread(consumer.run).start()
        try:
            wait_until(
                lambda: confirmation(janus, confirmation_id).status is ConfirmationStatus.GRANTED,
                60,
                message="the grant applied on the edge",
            )
            wait_until(
                lambda: request(cloud, request_id).status.value == "applied",
                60,
                message="the edge's answer in the cloud",
            )
            # The cloud's log now holds the edge's grant: the edge's to run, never the cloud's.
            drain(cloud.executor())
            assert door_ledger(cloud).executions() == []
            drain(janus.executor())
        finally:
            loop.stop()
    # A redelivered request is answered once and grants nothing more.
    again = edge_requests(janus).apply(
        ApplyEdgeRequest(
            request_id=request_id,
            confirmation_id=confirmation_id,
            kind=RequestKind.GRANT,
            requested_by="user:dana",
        ),
        OPERATOR,
    )
    assert (again.outcome, again.changed) == ("already_applied", False)
    drain(janus.executor())
    assert len(door_ledger(janus).executions(str(confirmation_id))) == 1
    assert confirmation(cloud, confirmation_id).status is ConfirmationStatus.GRANTED
    (status,) = edge_statuses(cloud.app)
    assert status.conflicts == []


@pytest.mark.parametrize("local", ["deny", "expiry"])
def test_a_cloud_grant_against_a_local_decision_is_a_conflict_on_both_sides(
    cloud: Janus, edge: tuple[EdgeCluster, Janus], local: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, janus = edge
    confirmation_id = pending_confirmation(janus, ttl=1 if local == "expiry" else 60)
    consumer = build_command_consumer(janus)
    with (
        running_edge_relay(janus),
        running_ingester(cloud, cluster.ingest_config(["n1"])),
    ):
        wait_until(lambda: in_cloud(cloud, confirmation_id), 60, message="the edge's confirmation")
        request_id = send_grant(cloud, confirmation_id)
        # Meanwhile the edge decides on its own (its operator denies, or the deadline passes).
        if local == "deny":
            janus.commands.deny_confirmation(
                m.DenyConfirmation(confirmation_id=confirmation_id, reason="not now"), OPERATOR
            )
        else:
            deadline = confirmation(janus, confirmation_id).expires_at
            wait_until(lambda: janus.clock.now() >= deadline, 10, message="the deadline")
            # The cloud's sweeper sees the deadline pass too, and leaves the edge's to the edge.
            cloud.relational.catch_up()
            assert cloud.expiry().sweep() == 0
        loop = LoopThread(consumer.run).start()
        try:
            wait_until(
                lambda: outcome_id(request_id) in janus.app.repository,
                60,
                message="the edge's answer",
            )
            if local == "expiry":  # the edge's sweeper records the expiry it already honoured
                janus.commands.expire_confirmation(
                    m.ExpireConfirmation(confirmation_id=confirmation_id), OPERATOR
                )
            wait_until(
                lambda: request(cloud, request_id).status.value == "conflicted",
                60,
                message="the conflict in the cloud",
            )
        finally:
            loop.stop()
    drain(janus.executor())
    answer: EdgeRequestOutcome = janus.app.repository.get(outcome_id(request_id))
    wanted = "already denied" if local == "deny" else "expired"
    assert (answer.conflicted, answer.outcome) == (True, wanted)
    kept = ConfirmationStatus.DENIED if local == "deny" else ConfirmationStatus.EXPIRED
    assert confirmation(janus, confirmation_id).status is kept  # never overwritten
    assert door_ledger(janus).executions(str(confirmation_id)) == []
    assert request(cloud, request_id).conflict == wanted
    (status,) = edge_statuses(cloud.app)
    assert [c["request_id"] for c in status.conflicts] == [str(request_id)]
    # The operator sees it: the request conflicted, the edge's conflicts counted.
    monkeypatch.setenv("JANUS_HOME", str(cloud.settings.home))
    if cloud.settings.database_url:
        monkeypatch.setenv("JANUS_DATABASE_URL", cloud.settings.database_url)
    (shown,) = as_json("edge", "requests")
    assert (shown["id"], shown["status"], shown["conflict"]) == (
        str(request_id),
        "conflicted",
        wanted,
    )
    assert [len(s["conflicts"]) for s in as_json("edge", "status")] == [1]


def test_the_cli_asks_only_for_another_node_s_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "cloud"))
    janus = Janus.for_cli()
    try:
        own = pending_confirmation(janus)
    finally:
        janus.close()
    assert_clean_failure(cli("edge", "grant", str(own)), "this node's own")
    assert_clean_failure(cli("edge", "grant", str(uuid4())), "no confirmation")
    assert_clean_failure(cli("edge", "deny", str(own), "--reason", ""), "reason")
    assert "no request sent to an edge" in ok("edge", "requests").stdout
