"""``GET /v1/edges``: each edge's sync state for viewers, gaps included, on both stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootstrap.container import Janus
from domain.api_key import Role
from tests.support.api import Api, is_problem, serve_api
from tests.support.edge import direct_ingester, hub_messages
from tests.support.relay import submit_goals


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def test_viewers_see_each_edges_cursor_and_gaps(api: Api, janus: Janus, edge: Janus) -> None:
    assert api.get("/v1/edges").json() == []
    submit_goals(edge, 4)
    msgs = hub_messages(edge)
    direct_ingester(janus).ingest([msgs[0], msgs[2], msgs[3]])  # the second expired unseen

    (shown,) = api.get("/v1/edges", Role.VIEWER).json()

    assert (shown["node"], shown["origin_sequence"]) == ("n1", 4)
    assert [(g["expected"], g["found"], g["reason"]) for g in shown["gaps"]] == [
        (2, 3, "retention")
    ]
    assert shown["conflicts"] == []
    assert shown["link"] == "unknown"  # no ingester has probed the edge's stream


def test_no_key_is_a_problem_401(api: Api) -> None:
    assert is_problem(api.client.get("/v1/edges"), 401)
