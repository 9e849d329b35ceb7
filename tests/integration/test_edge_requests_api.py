"""``/v1/edges/{node}/confirmations/{id}/grant|deny`` and ``/v1/edges/requests``: what
``janus edge grant|deny|requests`` does, over HTTP, on both stores.

The edge's confirmation reaches the cloud through the ingester's own append (no servers needed:
what travels to the edge is covered by test_edge_requests.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest

from bootstrap.container import Janus
from domain.api_key import Role
from domain.confirmation import Confirmation, ConfirmationStatus
from tests.support.api import Api, is_problem, serve_api
from tests.support.commands import pending_confirmation
from tests.support.edge import direct_ingester, hub_messages


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def synced_confirmation(cloud: Janus, edge: Janus) -> UUID:
    """A pending confirmation of edge n1, as the cloud holds it after sync."""
    confirmation_id = pending_confirmation(edge)
    direct_ingester(cloud).ingest(hub_messages(edge))
    return confirmation_id


def test_an_operator_asks_the_edge_to_grant_and_the_request_is_listed(
    api: Api, janus: Janus, edge: Janus
) -> None:
    confirmation_id = synced_confirmation(janus, edge)
    assert api.get("/v1/edges/requests").json() == []

    sent = api.post(f"/v1/edges/n1/confirmations/{confirmation_id}/grant")

    assert sent.status_code == 200, sent.text
    assert sent.json()["outcome"] == "sent"
    (listed,) = api.get("/v1/edges/requests", Role.VIEWER).json()
    assert listed == {
        "id": sent.json()["id"],
        "node": "n1",
        "confirmation_id": str(confirmation_id),
        "kind": "grant",
        "status": "sent",
        "conflict": None,
        "requested_by": listed["requested_by"],
    }
    assert listed["requested_by"].startswith("user:")
    # A request, never the grant itself: the confirmation is the edge's to decide.
    found: Confirmation = janus.app.repository.get(confirmation_id)
    assert found.status is ConfirmationStatus.PENDING


def test_a_deny_carries_its_reason_and_a_retried_key_sends_nothing_more(
    api: Api, janus: Janus, edge: Janus
) -> None:
    confirmation_id = synced_confirmation(janus, edge)
    path = f"/v1/edges/n1/confirmations/{confirmation_id}/deny"
    key = {"Idempotency-Key": str(uuid4())}

    first = api.post(path, json={"reason": "not tonight"}, headers=key)
    again = api.post(path, json={"reason": "not tonight"}, headers=key)

    assert first.status_code == again.status_code == 200, first.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    (listed,) = api.get("/v1/edges/requests").json()
    assert (listed["kind"], listed["status"]) == ("deny", "sent")
    assert is_problem(api.post(path, json={"reason": ""}), 422)


def test_wrong_edge_own_confirmation_and_unknown_id_are_problems(
    api: Api, janus: Janus, edge: Janus
) -> None:
    confirmation_id = synced_confirmation(janus, edge)
    own = pending_confirmation(janus)

    assert is_problem(api.post(f"/v1/edges/n2/confirmations/{confirmation_id}/grant"), 404)
    assert is_problem(api.post(f"/v1/edges/n1/confirmations/{uuid4()}/grant"), 404)
    assert is_problem(api.post(f"/v1/edges/n1/confirmations/{own}/grant"), 422)
    assert is_problem(api.post(f"/v1/edges/n.1/confirmations/{own}/grant"), 422)
    assert api.get("/v1/edges/requests").json() == []


def test_viewers_may_list_but_not_send_and_no_key_is_401(
    api: Api, janus: Janus, edge: Janus
) -> None:
    confirmation_id = synced_confirmation(janus, edge)
    path = f"/v1/edges/n1/confirmations/{confirmation_id}/grant"
    assert is_problem(api.post(path, Role.VIEWER), 403)
    assert is_problem(api.client.post(path), 401)
    assert is_problem(api.client.get("/v1/edges/requests"), 401)
    assert api.get("/v1/edges/requests", Role.VIEWER).json() == []
